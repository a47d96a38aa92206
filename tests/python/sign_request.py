"""Prints one SigV4-signed request (signed by botocore with the dev credential) as JSON:
{"method", "path", "headers": [[name, value], ...], "body"}. The Rust test sends it, moves the
gateway's clock past five minutes and sends the very same bytes again.

Usage: sign_request.py <Operation> <JSON body>"""
import json
import sys
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from common import ENDPOINT, REGION


def main():
    operation, body = sys.argv[1], sys.argv[2]
    creds = boto3.session.Session().get_credentials().get_frozen_credentials()
    req = AWSRequest(
        method="POST",
        url=ENDPOINT + "/",
        data=body.encode(),
        headers={"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": f"TrentService.{operation}"},
    )
    SigV4Auth(creds, "kms", REGION).add_auth(req)
    headers = [[k, v] for k, v in req.headers.items()]
    headers.append(["Host", urlsplit(ENDPOINT).netloc])
    print(json.dumps({"method": "POST", "path": "/", "headers": headers, "body": body}))


if __name__ == "__main__":
    main()
