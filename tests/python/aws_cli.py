"""The aws CLI (v1, from PyPI) against the Keyledger AWS endpoint: create-key, create-alias,
encrypt / decrypt with fileb://, generate-data-key, list-keys with pagination, and an error's
exit code."""
import base64
import json
import os
import subprocess
import tempfile

from common import ACCOUNT, ENDPOINT, REGION, check, main


# The aws CLI v1 (the one on PyPI) exits 255 on a service error; v2 exits 254.
SERVICE_ERROR = 255


def aws(*args, expect_code=0):
    cmd = ["aws", "--endpoint-url", ENDPOINT, "--region", REGION, "--output", "json", "kms", *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if p.returncode != expect_code:
        raise AssertionError(f"{' '.join(args)}: exit {p.returncode} (wanted {expect_code})\nstdout: {p.stdout}\nstderr: {p.stderr}")
    return p


def run():
    work = tempfile.mkdtemp(prefix="kl-cli-")
    key = json.loads(aws("create-key", "--description", "from the aws cli").stdout)["KeyMetadata"]
    check(key["Arn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{key['KeyId']}", "aws kms create-key")

    out = aws("create-alias", "--alias-name", "alias/cli", "--target-key-id", key["KeyId"])
    check(out.stdout.strip() == "", "aws kms create-alias prints nothing")

    secret = os.path.join(work, "secret.bin")
    with open(secret, "wb") as f:
        f.write(b"\x00\x01binary secret\xff" * 10)
    ct_b64 = aws(
        "encrypt", "--key-id", "alias/cli", "--plaintext", f"fileb://{secret}",
        "--encryption-context", "purpose=cli-test", "--query", "CiphertextBlob", "--output", "text",
    ).stdout.strip()
    ct = os.path.join(work, "secret.enc")
    with open(ct, "wb") as f:
        f.write(base64.b64decode(ct_b64))
    check(len(ct_b64) > 0, "aws kms encrypt --plaintext fileb://")
    pt_b64 = aws(
        "decrypt", "--ciphertext-blob", f"fileb://{ct}", "--encryption-context", "purpose=cli-test",
        "--query", "Plaintext", "--output", "text",
    ).stdout.strip()
    with open(secret, "rb") as f:
        check(base64.b64decode(pt_b64) == f.read(), "aws kms decrypt --ciphertext-blob fileb:// round-trips")
    failed = aws("decrypt", "--ciphertext-blob", f"fileb://{ct}", expect_code=SERVICE_ERROR)
    check("InvalidCiphertextException" in failed.stderr, "a wrong context exits with InvalidCiphertextException")

    dk = json.loads(aws("generate-data-key", "--key-id", "alias/cli", "--key-spec", "AES_256").stdout)
    check(len(base64.b64decode(dk["Plaintext"])) == 32 and dk["KeyId"] == key["Arn"], "aws kms generate-data-key")
    blob = os.path.join(work, "dk.enc")
    with open(blob, "wb") as f:
        f.write(base64.b64decode(dk["CiphertextBlob"]))
    again = json.loads(aws("decrypt", "--ciphertext-blob", f"fileb://{blob}").stdout)
    check(again["Plaintext"] == dk["Plaintext"], "the data key decrypts")

    for i in range(4):
        aws("create-key", "--description", f"page {i}")
    every = json.loads(aws("list-keys").stdout)["Keys"]
    auto = json.loads(aws("list-keys", "--page-size", "2").stdout)["Keys"]
    check(sorted(k["KeyId"] for k in auto) == sorted(k["KeyId"] for k in every) and len(every) >= 5,
          "aws kms list-keys --page-size 2 follows every page")
    first = json.loads(aws("list-keys", "--max-items", "2").stdout)
    check(len(first["Keys"]) == 2 and "NextToken" in first, "--max-items 2 returns a NextToken")
    rest = json.loads(aws("list-keys", "--starting-token", first["NextToken"]).stdout)
    seen = [k["KeyId"] for k in first["Keys"] + rest["Keys"]]
    check(sorted(seen) == sorted(k["KeyId"] for k in every), "--starting-token continues where it stopped")

    missing = aws("describe-key", "--key-id", "alias/missing", expect_code=SERVICE_ERROR)
    check("NotFoundException" in missing.stderr, "errors exit 255 and name the AWS error")


if __name__ == "__main__":
    main(run)
