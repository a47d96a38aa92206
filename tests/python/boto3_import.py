"""Importing key material exactly as the AWS KMS developer guide shows it: boto3 for the API
calls, the openssl CLI for wrapping 32 random bytes with the returned public key (RSA-OAEP with
SHA-256 and SHA-1, and RSA_AES_KEY_WRAP_SHA_256: an ephemeral AES-256 key wraps the material
with `openssl enc -id-aes256-wrap-pad`, and OAEP wraps that AES key)."""
import os
import subprocess
import tempfile

from common import check, expect_error, kms, main


def openssl(*args, data=None):
    return subprocess.run(["openssl", *args], input=data, capture_output=True, check=True).stdout


def oaep(public_key_der, data, digest, tmp):
    path = os.path.join(tmp, "wrapping.der")
    with open(path, "wb") as f:
        f.write(public_key_der)
    return openssl(
        "pkeyutl", "-encrypt", "-pubin", "-keyform", "DER", "-inkey", path,
        "-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", f"rsa_oaep_md:{digest}",
        "-pkeyopt", f"rsa_mgf1_md:{digest}", data=data,
    )


def wrap(public_key_der, algorithm, material, tmp):
    if algorithm == "RSAES_OAEP_SHA_256":
        return oaep(public_key_der, material, "sha256", tmp)
    if algorithm == "RSAES_OAEP_SHA_1":
        return oaep(public_key_der, material, "sha1", tmp)
    assert algorithm == "RSA_AES_KEY_WRAP_SHA_256"
    aes_key = os.urandom(32)
    wrapped_material = openssl("enc", "-id-aes256-wrap-pad", "-K", aes_key.hex(), "-iv", "A65959A6", data=material)
    return oaep(public_key_der, aes_key, "sha256", tmp) + wrapped_material


def run():
    c = kms()
    with tempfile.TemporaryDirectory() as tmp:
        for algorithm, spec in [
            ("RSAES_OAEP_SHA_256", "RSA_2048"),
            ("RSAES_OAEP_SHA_1", "RSA_3072"),
            ("RSA_AES_KEY_WRAP_SHA_256", "RSA_2048"),
        ]:
            meta = c.create_key(Origin="EXTERNAL", Description=f"byok {algorithm}")["KeyMetadata"]
            kid = meta["KeyId"]
            check(meta["KeyState"] == "PendingImport" and meta["Origin"] == "EXTERNAL", "EXTERNAL key starts PendingImport")
            params = c.get_parameters_for_import(KeyId=kid, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
            check(params["KeyId"] == meta["Arn"], f"GetParametersForImport {algorithm}/{spec} answers the ARN")
            material = os.urandom(32)
            encrypted = wrap(params["PublicKey"], algorithm, material, tmp)
            done = c.import_key_material(
                KeyId=kid,
                ImportToken=params["ImportToken"],
                EncryptedKeyMaterial=encrypted,
                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
            )
            check(len(done["KeyMaterialId"]) == 64, f"ImportKeyMaterial ({algorithm}, wrapped by openssl)")
            meta = c.describe_key(KeyId=kid)["KeyMetadata"]
            check(meta["KeyState"] == "Enabled", "the key is Enabled after the import")
            blob = c.encrypt(KeyId=kid, Plaintext=b"byok secret")["CiphertextBlob"]
            check(c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"byok secret", "encrypts and decrypts")

            c.delete_imported_key_material(KeyId=kid)
            check(c.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "PendingImport", "DeleteImportedKeyMaterial")
            expect_error("KMSInvalidStateException", c.decrypt, CiphertextBlob=blob)
            params = c.get_parameters_for_import(KeyId=kid, WrappingAlgorithm=algorithm, WrappingKeySpec=spec)
            expect_error(
                "IncorrectKeyMaterialException",
                c.import_key_material,
                KeyId=kid,
                ImportToken=params["ImportToken"],
                EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, os.urandom(32), tmp),
                ExpirationModel="KEY_MATERIAL_DOES_NOT_EXPIRE",
            )
            # The refused import did not spend the token (its unwrap succeeded).
            valid_to = params["ParametersValidTo"]
            c.import_key_material(
                KeyId=kid,
                ImportToken=params["ImportToken"],
                EncryptedKeyMaterial=wrap(params["PublicKey"], algorithm, material, tmp),
                ValidTo=valid_to,
            )
            meta = c.describe_key(KeyId=kid)["KeyMetadata"]
            # botocore sends timestamps in whole seconds.
            drift = abs((meta["ValidTo"] - valid_to).total_seconds())
            check(meta["ExpirationModel"] == "KEY_MATERIAL_EXPIRES" and drift < 1.0, "reimport with ValidTo")
            check(c.decrypt(CiphertextBlob=blob)["Plaintext"] == b"byok secret", "the same material again: old ciphertext decrypts")

        native = c.create_key()["KeyMetadata"]["KeyId"]
        expect_error(
            "UnsupportedOperationException",
            c.get_parameters_for_import,
            KeyId=native,
            WrappingAlgorithm="RSAES_OAEP_SHA_256",
            WrappingKeySpec="RSA_2048",
        )
        expect_error(
            "ValidationException",
            c.import_key_material,
            KeyId=native,
            ImportToken=b"x",
            EncryptedKeyMaterial=b"y",
            message="A validTo date must be set if the ExpirationModel is KEY_MATERIAL_EXPIRES",
        )


if __name__ == "__main__":
    main(run)
