"""The AWS JSON 1.1 wire rules, checked with hand-built requests signed by botocore's SigV4
signer: unknown targets, malformed JSON, unknown members, empty bodies for operations without
output, the x-amzn-RequestId header, the error body shape."""
import json

import boto3
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from common import ENDPOINT, REGION, check, main

HTTP = urllib3.PoolManager()


def call(target, body, content_type="application/x-amz-json-1.1"):
    creds = boto3.session.Session().get_credentials().get_frozen_credentials()
    headers = {"Content-Type": content_type}
    if target is not None:
        headers["X-Amz-Target"] = target
    req = AWSRequest(method="POST", url=ENDPOINT + "/", data=body, headers=headers)
    SigV4Auth(creds, "kms", REGION).add_auth(req)
    r = HTTP.request("POST", ENDPOINT + "/", body=body, headers=dict(req.headers.items()), retries=False)
    return r.status, r.headers, r.data


def error_of(status, headers, data):
    body = json.loads(data)
    check(set(body) == {"__type", "message"}, f"error body is {{__type, message}} ({body['__type']})")
    check(headers.get("x-amzn-RequestId"), "errors carry x-amzn-RequestId")
    check(headers.get("Content-Type") == "application/x-amz-json-1.1", "errors are application/x-amz-json-1.1")
    return status, body["__type"], body["message"]


def run():
    status, headers, data = call("TrentService.ListKeys", b"{}")
    check(status == 200 and headers.get("x-amzn-RequestId"), "ListKeys: 200 with x-amzn-RequestId")
    check(headers.get("Content-Type") == "application/x-amz-json-1.1", "responses are application/x-amz-json-1.1")

    status, name, _ = error_of(*call("TrentService.NoSuchThing", b"{}"))
    check((status, name) == (400, "UnknownOperationException"), "an unknown operation is UnknownOperationException")
    status, name, _ = error_of(*call("TrentService.List.Keys", b"{}"))
    check((status, name) == (400, "UnknownOperationException"), "a malformed target is UnknownOperationException")
    status, name, _ = error_of(*call(None, b"{}"))
    check((status, name) == (400, "UnknownOperationException"), "a missing target is UnknownOperationException")
    status, name, _ = error_of(*call("TrentService.ListKeys", b"{not json"))
    check((status, name) == (400, "SerializationException"), "malformed JSON is SerializationException")
    status, name, _ = error_of(*call("TrentService.GenerateRandom", b'{"NumberOfBytes": "many"}'))
    check((status, name) == (400, "SerializationException"), "a member of the wrong type is SerializationException")

    status, _, data = call("TrentService.GenerateRandom", b'{"NumberOfBytes": 16, "SomeFutureMember": {"x": [1]}}')
    check(status == 200 and "Plaintext" in json.loads(data), "unknown members are ignored")

    status, _, data = call("TrentService.CreateKey", b"{}")
    key = json.loads(data)["KeyMetadata"]
    check(isinstance(key["CreationDate"], (int, float)), "timestamps are epoch-second numbers")
    status, headers, data = call("TrentService.DisableKey", json.dumps({"KeyId": key["KeyId"]}).encode())
    check(status == 200 and data == b"", "an operation without output answers 200 with an empty body")
    status, name, message = error_of(*call("TrentService.Encrypt", json.dumps({"KeyId": key["KeyId"], "Plaintext": "eA=="}).encode()))
    check((status, name, message) == (400, "DisabledException", f"{key['Arn']} is disabled."), "role errors pass through with HTTP 400")


if __name__ == "__main__":
    main(run)
