"""boto3 over HTTPS, verifying the gateway's certificate (KEYLEDGER_CA_BUNDLE), and a client
that does not trust it failing the handshake."""
import os

from botocore.exceptions import SSLError

from common import check, kms, main


def run():
    ca = os.environ["KEYLEDGER_CA_BUNDLE"]
    c = kms(verify=ca)
    key = c.create_key(Description="over tls")["KeyMetadata"]
    blob = c.encrypt(KeyId=key["KeyId"], Plaintext=b"over tls")["CiphertextBlob"]
    check(c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"over tls", "Encrypt/Decrypt over HTTPS")
    try:
        kms().list_keys()
    except SSLError:
        check(True, "a client that does not trust the certificate is refused in the handshake")
    else:
        raise AssertionError("an untrusted certificate was accepted")


if __name__ == "__main__":
    main(run)
