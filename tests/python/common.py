"""Shared helpers for the gateway client tests.

The Rust harness (tests/tests/gateway_support) starts a dev environment with the AWS endpoint
and runs these scripts with:

  KEYLEDGER_ENDPOINT           e.g. http://127.0.0.1:41234
  AWS_SHARED_CREDENTIALS_FILE  the dev environment's aws-credentials (profile "keyledger")
  AWS_PROFILE=keyledger, AWS_DEFAULT_REGION=us-east-1, AWS_CONFIG_FILE=<absent file>
  KEYLEDGER_ACCOUNT            the dev credential's account (111122223333)
  KEYLEDGER_OTHER_KEY_ID / KEYLEDGER_OTHER_SECRET / KEYLEDGER_OTHER_ACCOUNT
                               a second credential in another account

A script exits 0 when every check passed; a failed check raises and exits non-zero with a
message on stderr. Each check prints one "ok: ..." line so the Rust test can count them.
"""
import os
import sys

import boto3
import botocore.config
from botocore.exceptions import ClientError

ENDPOINT = os.environ["KEYLEDGER_ENDPOINT"]
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
ACCOUNT = os.environ["KEYLEDGER_ACCOUNT"]
NO_RETRIES = botocore.config.Config(retries={"max_attempts": 1, "mode": "standard"})


def kms(**kwargs):
    """A KMS client for the dev credential (or the given keys), no retries."""
    kwargs.setdefault("endpoint_url", ENDPOINT)
    kwargs.setdefault("region_name", REGION)
    kwargs.setdefault("config", NO_RETRIES)
    return boto3.session.Session().client("kms", **kwargs)


def other_kms():
    """A KMS client for the second credential (another account)."""
    return kms(
        aws_access_key_id=os.environ["KEYLEDGER_OTHER_KEY_ID"],
        aws_secret_access_key=os.environ["KEYLEDGER_OTHER_SECRET"],
    )


def check(condition, what):
    if not condition:
        raise AssertionError(f"check failed: {what}")
    print(f"ok: {what}", flush=True)


def expect_error(code, fn, *args, message=None, **kwargs):
    """Calls fn and requires a ClientError with this code, HTTP 400 (or the given status),
    a request id, and (optionally) this exact message."""
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        err = e.response["Error"]
        meta = e.response["ResponseMetadata"]
        if err.get("Code") != code:
            raise AssertionError(f"expected {code}, got {err.get('Code')}: {err.get('Message')}") from e
        status = meta.get("HTTPStatusCode")
        if status != 400:
            raise AssertionError(f"{code}: expected HTTP 400, got {status}") from e
        if not meta.get("RequestId"):
            raise AssertionError(f"{code}: no x-amzn-RequestId") from e
        if message is not None and err.get("Message") != message:
            raise AssertionError(f"{code}: expected message {message!r}, got {err.get('Message')!r}") from e
        print(f"ok: {code} ({err.get('Message', '')[:80]})", flush=True)
        return err
    raise AssertionError(f"expected {code}, but the call succeeded")


def main(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report any failure with its type
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        raise
    print("all checks passed", flush=True)
