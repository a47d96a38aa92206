"""boto3 against the Keyledger AWS endpoint: key policies (CreateKey with Policy, PutKeyPolicy,
GetKeyPolicy, ListKeyPolicies, the lockout check, explicit deny), grants (CreateGrant with
constraints, grant tokens, ListGrants, ListRetirableGrants, RetireGrant, RevokeGrant,
idempotent retries by Name), cross-account use by key ARN, and account isolation: two accounts
with the same alias name see nothing of each other in any List or Describe."""
import json
import os

from common import ACCOUNT, REGION, check, expect_error, kms, main, other_kms

OTHER = os.environ["KEYLEDGER_OTHER_ACCOUNT"]
DEV_USER = f"arn:aws:iam::{ACCOUNT}:user/dev"
OTHER_USER = f"arn:aws:iam::{OTHER}:user/other"


def policy(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ADMIN = {"Sid": "Admin", "Effect": "Allow", "Principal": {"AWS": DEV_USER}, "Action": "kms:*", "Resource": "*"}


def run():
    c, o = kms(), other_kms()

    # --- Key policies ---
    plain = c.create_key()["KeyMetadata"]
    got = c.get_key_policy(KeyId=plain["KeyId"], PolicyName="default")
    default = json.loads(got["Policy"])
    check(default["Statement"][0]["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "the default key policy names the account root")
    check(c.list_key_policies(KeyId=plain["KeyId"])["PolicyNames"] == ["default"], "ListKeyPolicies")
    expect_error("MalformedPolicyDocumentException", c.create_key, Policy='{"Version":"2012-10-17"}')
    locked = policy({"Effect": "Allow", "Principal": {"AWS": OTHER_USER}, "Action": "kms:*", "Resource": "*"})
    expect_error("MalformedPolicyDocumentException", c.create_key, Policy=locked,
                 message="The new key policy will not allow you to update the key policy in the future.")

    shared_doc = policy(ADMIN, {
        "Sid": "OtherAccountEncryptsForTenantA", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DescribeKey"], "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "a"}},
    })
    shared = c.create_key(Policy=shared_doc, Description="shared")["KeyMetadata"]
    check(c.get_key_policy(KeyId=shared["Arn"])["Policy"] == shared_doc, "GetKeyPolicy returns the document as given")

    # Cross-account by ARN, as far as the policy allows.
    blob = o.encrypt(KeyId=shared["Arn"], Plaintext=b"cross", EncryptionContext={"tenant": "a"})["CiphertextBlob"]
    check(c.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"})["Plaintext"] == b"cross", "the owner decrypts what the other account encrypted")
    check(o.decrypt(CiphertextBlob=blob, EncryptionContext={"tenant": "a"})["Plaintext"] == b"cross", "the other account decrypts by the ciphertext alone")
    expect_error("AccessDeniedException", o.encrypt, KeyId=shared["Arn"], Plaintext=b"x", EncryptionContext={"tenant": "b"})
    expect_error("AccessDeniedException", o.disable_key, KeyId=shared["Arn"])
    expect_error("AccessDeniedException", o.describe_key, KeyId=plain["Arn"])
    expect_error("NotFoundException", o.describe_key, KeyId=shared["KeyId"])

    # PutKeyPolicy: an explicit deny wins over the Admin allow.
    c.put_key_policy(KeyId=shared["KeyId"], PolicyName="default", Policy=policy(ADMIN, {
        "Sid": "NoDecrypt", "Effect": "Deny", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}))
    err = expect_error("AccessDeniedException", c.decrypt, CiphertextBlob=blob, EncryptionContext={"tenant": "a"})
    check(err["Message"].endswith("with an explicit deny in a resource-based policy"), "explicit deny is named as such")
    expect_error("AccessDeniedException", o.encrypt, KeyId=shared["Arn"], Plaintext=b"x", EncryptionContext={"tenant": "a"})
    c.put_key_policy(KeyId=shared["KeyId"], PolicyName="default", Policy=policy(ADMIN))

    # --- Grants ---
    g = c.create_grant(KeyId=shared["KeyId"], GranteePrincipal=OTHER_USER, Operations=["Encrypt", "Decrypt", "RetireGrant"],
                       Constraints={"EncryptionContextEquals": {"Tenant": "b"}}, Name="other-b")
    check(len(g["GrantId"]) == 64 and g["GrantToken"].startswith("KLGT1"), "CreateGrant returns a grant id and token")
    again = c.create_grant(KeyId=shared["KeyId"], GranteePrincipal=OTHER_USER, Operations=["Encrypt", "Decrypt", "RetireGrant"],
                           Constraints={"EncryptionContextEquals": {"Tenant": "b"}}, Name="other-b")
    check(again["GrantId"] == g["GrantId"], "CreateGrant with the same Name is idempotent")
    blob_b = o.encrypt(KeyId=shared["Arn"], Plaintext=b"granted", EncryptionContext={"TENANT": "b"},
                       GrantTokens=[g["GrantToken"]])["CiphertextBlob"]
    check(o.decrypt(CiphertextBlob=blob_b, EncryptionContext={"TENANT": "b"})["Plaintext"] == b"granted",
          "the grantee encrypts and decrypts; constraint keys compare case-insensitively")
    expect_error("AccessDeniedException", o.encrypt, KeyId=shared["Arn"], Plaintext=b"x", EncryptionContext={"tenant": "B"})
    expect_error("AccessDeniedException", o.encrypt, KeyId=shared["Arn"], Plaintext=b"x", EncryptionContext={"tenant": "b", "more": "1"})
    grants = c.list_grants(KeyId=shared["KeyId"])["Grants"]
    check([x["GrantId"] for x in grants] == [g["GrantId"]], "ListGrants lists the grant")
    check(grants[0]["Constraints"] == {"EncryptionContextEquals": {"Tenant": "b"}} and "GrantToken" not in grants[0], "ListGrants shows constraints, never tokens")
    expect_error("InvalidGrantTokenException", o.encrypt, KeyId=shared["Arn"], Plaintext=b"x",
                 EncryptionContext={"tenant": "b"}, GrantTokens=["KLGT1" + "A" * 155])
    o.retire_grant(GrantToken=g["GrantToken"])
    expect_error("AccessDeniedException", o.encrypt, KeyId=shared["Arn"], Plaintext=b"x", EncryptionContext={"tenant": "b"})

    r = c.create_grant(KeyId=shared["KeyId"], GranteePrincipal=OTHER_USER, Operations=["Encrypt"], RetiringPrincipal=DEV_USER)
    check(any(x["GrantId"] == r["GrantId"] for x in c.list_retirable_grants(RetiringPrincipal=DEV_USER)["Grants"]), "ListRetirableGrants")
    o.encrypt(KeyId=shared["Arn"], Plaintext=b"x", GrantTokens=[r["GrantToken"]])
    expect_error("AccessDeniedException", o.revoke_grant, KeyId=shared["Arn"], GrantId=r["GrantId"])
    c.revoke_grant(KeyId=shared["KeyId"], GrantId=r["GrantId"])
    expect_error("AccessDeniedException", o.encrypt, KeyId=shared["Arn"], Plaintext=b"x")
    expect_error("InvalidGrantIdException", c.revoke_grant, KeyId=shared["KeyId"], GrantId="not-a-grant-id")
    expect_error("ValidationException", c.create_grant, KeyId=shared["KeyId"], GranteePrincipal=OTHER_USER, Operations=["Sign"])

    # --- Account isolation: the same alias name in two accounts ---
    mine = c.create_key(Description="mine")["KeyMetadata"]
    theirs = o.create_key(Description="theirs")["KeyMetadata"]
    c.create_alias(AliasName="alias/isolated", TargetKeyId=mine["KeyId"])
    o.create_alias(AliasName="alias/isolated", TargetKeyId=theirs["KeyId"])
    check(c.describe_key(KeyId="alias/isolated")["KeyMetadata"]["KeyId"] == mine["KeyId"], "an alias name resolves in the caller's account")
    check(o.describe_key(KeyId="alias/isolated")["KeyMetadata"]["KeyId"] == theirs["KeyId"], "the same name is another alias in the other account")
    my_keys = {k["KeyId"] for k in c.list_keys()["Keys"]}
    their_keys = {k["KeyId"] for k in o.list_keys()["Keys"]}
    check(not (my_keys & their_keys) and theirs["KeyId"] not in my_keys and mine["KeyId"] not in their_keys, "ListKeys never shows the other account's keys")
    check(all(a["AliasArn"].split(":")[4] == ACCOUNT for a in c.list_aliases()["Aliases"]), "ListAliases shows only the caller's aliases")
    check(all(a["AliasArn"].split(":")[4] == OTHER for a in o.list_aliases()["Aliases"]), "the other account's ListAliases shows only its own")
    check(o.list_grants(KeyId=theirs["KeyId"])["Grants"] == [], "ListGrants on an own key")
    expect_error("AccessDeniedException", o.list_grants, KeyId=mine["Arn"])
    expect_error("AccessDeniedException", o.list_aliases, KeyId=mine["Arn"])
    expect_error("AccessDeniedException", o.list_resource_tags, KeyId=mine["Arn"])
    expect_error("AccessDeniedException", o.get_key_rotation_status, KeyId=mine["Arn"])
    expect_error("AccessDeniedException", o.describe_key, KeyId=f"arn:aws:kms:{REGION}:{ACCOUNT}:alias/isolated")


main(run)
