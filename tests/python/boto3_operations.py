"""boto3 against the Keyledger AWS endpoint: every operation family Keyledger serves, and the
common AWS errors with their exact names, HTTP 400 and (where AWS fixes it) exact message."""
import datetime
import os

from common import ACCOUNT, REGION, check, expect_error, kms, main, other_kms


def arn_of(key_id, account=ACCOUNT):
    return f"arn:aws:kms:{REGION}:{account}:key/{key_id}"


def run():
    c = kms()

    # --- Keys: create, describe, update, list (read-your-writes on every step) ---
    created = c.create_key(Description="boto3 key", Tags=[{"TagKey": "team", "TagValue": "payments"}])
    meta = created["KeyMetadata"]
    kid, arn = meta["KeyId"], meta["Arn"]
    check(arn == arn_of(kid), "CreateKey returns the full key ARN")
    check(isinstance(meta["CreationDate"], datetime.datetime), "CreationDate parses as an epoch timestamp")
    check(meta["KeyState"] == "Enabled" and meta["KeySpec"] == "SYMMETRIC_DEFAULT", "new key is an enabled symmetric key")
    check(created["ResponseMetadata"]["RequestId"] != "", "responses carry x-amzn-RequestId")
    check(c.describe_key(KeyId=arn)["KeyMetadata"]["KeyId"] == kid, "DescribeKey by ARN")
    update = c.update_key_description(KeyId=kid, Description="renamed")
    check(update["ResponseMetadata"]["HTTPHeaders"].get("content-length") == "0", "no-output operations answer an empty body")
    check(c.describe_key(KeyId=kid)["KeyMetadata"]["Description"] == "renamed", "UpdateKeyDescription is read back at once")
    check(any(k["KeyId"] == kid and k["KeyArn"] == arn for k in c.list_keys()["Keys"]), "ListKeys lists the key with its ARN")

    # --- Tags ---
    c.tag_resource(KeyId=kid, Tags=[{"TagKey": "env", "TagValue": "dev"}])
    tags = {t["TagKey"]: t["TagValue"] for t in c.list_resource_tags(KeyId=kid)["Tags"]}
    check(tags == {"team": "payments", "env": "dev"}, "TagResource / ListResourceTags")
    c.untag_resource(KeyId=kid, TagKeys=["env"])
    check([t["TagKey"] for t in c.list_resource_tags(KeyId=kid)["Tags"]] == ["team"], "UntagResource")
    expect_error("TagException", c.tag_resource, KeyId=kid, Tags=[{"TagKey": "aws:reserved", "TagValue": "x"}])

    # --- Aliases ---
    other = c.create_key(Description="second")["KeyMetadata"]
    c.create_alias(AliasName="alias/boto3", TargetKeyId=kid)
    aliases = c.list_aliases()["Aliases"]
    check(any(a["AliasName"] == "alias/boto3" and a["TargetKeyId"] == kid for a in aliases), "CreateAlias / ListAliases")
    check(c.list_aliases(KeyId=kid)["Aliases"][0]["AliasArn"] == f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/boto3", "ListAliases by key")
    expect_error("AlreadyExistsException", c.create_alias, AliasName="alias/boto3", TargetKeyId=other["KeyId"])
    expect_error("ValidationException", c.create_alias, AliasName="boto3", TargetKeyId=kid)
    c.update_alias(AliasName="alias/boto3", TargetKeyId=other["KeyId"])
    check(c.describe_key(KeyId="alias/boto3")["KeyMetadata"]["KeyId"] == other["KeyId"], "UpdateAlias retargets")
    c.update_alias(AliasName="alias/boto3", TargetKeyId=kid)

    # --- Cryptography ---
    ctx = {"app": "boto3", "purpose": "test"}
    enc = c.encrypt(KeyId="alias/boto3", Plaintext=b"db password", EncryptionContext=ctx)
    check(enc["KeyId"] == arn, "Encrypt by alias answers the full key ARN")
    check(enc["EncryptionAlgorithm"] == "SYMMETRIC_DEFAULT", "Encrypt names the algorithm")
    blob = enc["CiphertextBlob"]
    dec = c.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)
    check(dec["Plaintext"] == b"db password" and dec["KeyId"] == arn, "Decrypt without KeyId")
    check(c.decrypt(CiphertextBlob=blob, EncryptionContext=ctx, KeyId=arn)["Plaintext"] == b"db password", "Decrypt with KeyId")
    expect_error("InvalidCiphertextException", c.decrypt, CiphertextBlob=blob, EncryptionContext={"app": "other"}, message="")
    expect_error("InvalidCiphertextException", c.decrypt, CiphertextBlob=blob[:-1] + bytes([blob[-1] ^ 1]), EncryptionContext=ctx)
    expect_error("IncorrectKeyException", c.decrypt, CiphertextBlob=blob, EncryptionContext=ctx, KeyId=other["KeyId"])
    re = c.re_encrypt(CiphertextBlob=blob, SourceEncryptionContext=ctx, DestinationKeyId=other["KeyId"])
    check(re["SourceKeyId"] == arn and re["KeyId"] == other["Arn"], "ReEncrypt names both keys by ARN")
    check(c.decrypt(CiphertextBlob=re["CiphertextBlob"])["Plaintext"] == b"db password", "ReEncrypt result decrypts")
    dk = c.generate_data_key(KeyId=kid, KeySpec="AES_256", EncryptionContext=ctx)
    check(len(dk["Plaintext"]) == 32 and dk["KeyId"] == arn, "GenerateDataKey AES_256")
    check(c.decrypt(CiphertextBlob=dk["CiphertextBlob"], EncryptionContext=ctx)["Plaintext"] == dk["Plaintext"], "data key decrypts")
    dkw = c.generate_data_key_without_plaintext(KeyId=kid, NumberOfBytes=64)
    check("Plaintext" not in dkw and dkw["KeyId"] == arn, "GenerateDataKeyWithoutPlaintext has no plaintext")
    check(len(c.decrypt(CiphertextBlob=dkw["CiphertextBlob"])["Plaintext"]) == 64, "its data key decrypts to 64 bytes")
    check(len(c.generate_random(NumberOfBytes=48)["Plaintext"]) == 48, "GenerateRandom")
    expect_error(
        "ValidationException",
        c.generate_random,
        NumberOfBytes=1025,
        message="1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024",
    )
    expect_error("ValidationException", c.encrypt, KeyId=kid, Plaintext=b"x" * 4097)

    # --- Rotation ---
    c.enable_key_rotation(KeyId=kid, RotationPeriodInDays=90)
    status = c.get_key_rotation_status(KeyId=kid)
    check(status["KeyRotationEnabled"] and status["RotationPeriodInDays"] == 90, "EnableKeyRotation / GetKeyRotationStatus")
    check(isinstance(status["NextRotationDate"], datetime.datetime), "NextRotationDate parses")
    check(c.rotate_key_on_demand(KeyId=kid)["KeyId"] == arn, "RotateKeyOnDemand answers the ARN")
    rotations = c.list_key_rotations(KeyId=kid)["Rotations"]
    check(len(rotations) == 1 and rotations[0]["RotationType"] == "ON_DEMAND", "ListKeyRotations")
    check(c.decrypt(CiphertextBlob=blob, EncryptionContext=ctx)["Plaintext"] == b"db password", "old material still decrypts")
    c.disable_key_rotation(KeyId=kid)
    check(not c.get_key_rotation_status(KeyId=kid)["KeyRotationEnabled"], "DisableKeyRotation")

    # --- Lifecycle and state errors ---
    c.disable_key(KeyId=kid)
    expect_error("DisabledException", c.encrypt, KeyId=kid, Plaintext=b"x", message=f"{arn} is disabled.")
    c.enable_key(KeyId=kid)
    check(c.describe_key(KeyId=kid)["KeyMetadata"]["Enabled"], "EnableKey")
    sched = c.schedule_key_deletion(KeyId=kid, PendingWindowInDays=7)
    check(sched["KeyId"] == arn and sched["KeyState"] == "PendingDeletion", "ScheduleKeyDeletion")
    check(sched["PendingWindowInDays"] == 7 and isinstance(sched["DeletionDate"], datetime.datetime), "deletion date")
    expect_error("KMSInvalidStateException", c.encrypt, KeyId=kid, Plaintext=b"x", message=f"{arn} is pending deletion.")
    expect_error("ValidationException", c.schedule_key_deletion, KeyId=other["KeyId"], PendingWindowInDays=6)
    check(c.cancel_key_deletion(KeyId=kid)["KeyId"] == arn, "CancelKeyDeletion answers the ARN")
    check(c.describe_key(KeyId=kid)["KeyMetadata"]["KeyState"] == "Disabled", "a cancelled deletion leaves the key Disabled")

    # --- Not found ---
    expect_error("NotFoundException", c.describe_key, KeyId="fake-key-id", message="Invalid keyId 'fake-key-id'")
    missing = "11111111-2222-4333-8444-555555555555"
    expect_error("NotFoundException", c.describe_key, KeyId=missing, message=f"Key '{arn_of(missing)}' does not exist")
    expect_error("NotFoundException", c.encrypt, KeyId="alias/does-not-exist", Plaintext=b"x")

    # --- Accounts are separate: the second credential's account cannot use this key ---
    o = other_kms()
    other_account = os.environ["KEYLEDGER_OTHER_ACCOUNT"]
    own = o.create_key(Description="other account")["KeyMetadata"]
    check(own["Arn"] == arn_of(own["KeyId"], other_account), "the second credential acts in its own account")
    check(all(k["KeyId"] != kid for k in o.list_keys()["Keys"]), "ListKeys shows only the caller's account")
    other_blob = c.encrypt(KeyId=other["KeyId"], Plaintext=b"not yours")["CiphertextBlob"]
    expect_error("AccessDeniedException", o.decrypt, CiphertextBlob=other_blob)

    # --- Pagination (the boto3 paginator follows NextMarker) ---
    for i in range(3):
        c.create_key(Description=f"page {i}")
    everything = {k["KeyId"] for k in c.list_keys()["Keys"]}
    pages = list(c.get_paginator("list_keys").paginate(PaginationConfig={"PageSize": 2}))
    paged = [k["KeyId"] for p in pages for k in p["Keys"]]
    check(len(pages) >= 3 and all(len(p["Keys"]) <= 2 for p in pages), "ListKeys pages of 2")
    check(sorted(paged) == sorted(everything), "the pages hold every key exactly once")


if __name__ == "__main__":
    main(run)
