"""Requests the gateway must refuse before they reach Keyledger: a wrong secret, an unknown
access key, an unsigned request, a credential scoped to another region. Each must come back
as the AWS error AWS would send, HTTP 400, with a request id."""
import os

import botocore
from botocore.config import Config

from common import ENDPOINT, REGION, check, expect_error, kms, main


def run():
    good = kms()
    creds = good._request_signer._credentials  # the dev credential from the shared file
    check(len(good.list_keys()["Keys"]) >= 0, "the dev credential is accepted")

    wrong_secret = kms(aws_access_key_id=creds.access_key, aws_secret_access_key="x" * 40)
    expect_error(
        "InvalidSignatureException",
        wrong_secret.list_keys,
        message="The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    )
    expect_error("InvalidSignatureException", wrong_secret.encrypt, KeyId="alias/x", Plaintext=b"never forwarded")

    unknown = kms(aws_access_key_id="KLAKUNKNOWNUNKNOWN22", aws_secret_access_key=creds.secret_key)
    expect_error("UnrecognizedClientException", unknown.list_keys, message="The security token included in the request is invalid.")

    temporary = kms(aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key, aws_session_token="FQoGZXIvYXdzEJr")
    expect_error("UnrecognizedClientException", temporary.list_keys)

    unsigned = kms(config=Config(signature_version=botocore.UNSIGNED, retries={"max_attempts": 1}))
    expect_error("MissingAuthenticationTokenException", unsigned.list_keys, message="Missing Authentication Token")

    other_region = "eu-west-1" if REGION != "eu-west-1" else "us-west-2"
    elsewhere = kms(region_name=other_region)
    expect_error(
        "InvalidSignatureException",
        elsewhere.list_keys,
        message=f"Credential should be scoped to a valid region, not '{other_region}'.",
    )


if __name__ == "__main__":
    main(run)
