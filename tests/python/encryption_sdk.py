"""The AWS Encryption SDK for Python (4.x, with the Material Providers Library) encrypting and
decrypting a 12 MiB file, streamed, through an AWS KMS keyring whose key is a Keyledger key
ARN. The SDK checks every KMS response's KeyId against the keyring's ARN."""
import hashlib
import os
import sys
import tempfile

import aws_encryption_sdk
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsKeyringInput
from aws_encryption_sdk import CommitmentPolicy

from common import check, kms, main

SIZE = 12 * 1024 * 1024
CHUNK = 1024 * 1024


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def keyring_for(client, key_arn):
    mpl = AwsCryptographicMaterialProviders(config=MaterialProvidersConfig())
    return mpl.create_aws_kms_keyring(input=CreateAwsKmsKeyringInput(kms_key_id=key_arn, kms_client=client))


def run():
    client = kms()
    key_arn = client.create_key(Description="encryption sdk")["KeyMetadata"]["Arn"]
    keyring = keyring_for(client, key_arn)
    esdk = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    work = tempfile.mkdtemp(prefix="kl-esdk-")
    src, enc, dec = (os.path.join(work, n) for n in ("plain.bin", "plain.bin.encrypted", "plain.bin.decrypted"))
    with open(src, "wb") as f:
        for _ in range(SIZE // CHUNK):
            f.write(os.urandom(CHUNK))
    context = {"purpose": "keyledger-esdk-test"}

    with open(src, "rb") as fin, open(enc, "wb") as fout:
        with esdk.stream(mode="e", source=fin, keyring=keyring, encryption_context=context, frame_length=64 * 1024) as encryptor:
            for chunk in encryptor:
                fout.write(chunk)
    check(os.path.getsize(enc) > SIZE, f"encrypted a {SIZE}-byte file ({os.path.getsize(enc)} bytes out)")
    with open(enc, "rb") as f:
        head = f.read(4096)
    check(key_arn.encode() in head, "the message header stores the Keyledger key ARN as the provider info")

    with open(enc, "rb") as fin, open(dec, "wb") as fout:
        with esdk.stream(mode="d", source=fin, keyring=keyring) as decryptor:
            for chunk in decryptor:
                fout.write(chunk)
            header_context = decryptor.header.encryption_context
    check(sha256(dec) == sha256(src), "decrypted file is identical")
    check(header_context.get("purpose") == "keyledger-esdk-test", "the encryption context is bound")

    # A keyring for another Keyledger key cannot decrypt it.
    other = client.create_key(Description="other")["KeyMetadata"]["Arn"]
    try:
        with open(enc, "rb") as fin:
            with esdk.stream(mode="d", source=fin, keyring=keyring_for(client, other)) as decryptor:
                for _ in decryptor:
                    pass
    except Exception as e:  # noqa: BLE001 - the SDK raises its own error types
        check(True, f"another key's keyring cannot decrypt ({type(e).__name__})")
    else:
        raise AssertionError("a keyring for another key decrypted the message")


if __name__ == "__main__":
    main(run)
