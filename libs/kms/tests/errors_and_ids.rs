//! Error names, statuses and envelopes; key identifiers and their resolution errors
//! (aws-kms-api.md §1.3, §1.4, §5).

use keyledger_kms::error::{validation_error, violation, Shown};
use keyledger_kms::{parse_key_ref, ErrorKind, KeyId, KeyRef, KmsError, Realm};
use serde_json::json;

#[test]
fn every_error_kind_has_its_aws_name_and_round_trips() {
    let names: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.aws_name()).collect();
    assert_eq!(
        names,
        [
            "NotFoundException",
            "InvalidArnException",
            "AlreadyExistsException",
            "DisabledException",
            "KMSInvalidStateException",
            "InvalidKeyUsageException",
            "UnsupportedOperationException",
            "IncorrectKeyException",
            "InvalidCiphertextException",
            "InvalidGrantTokenException",
            "InvalidMarkerException",
            "InvalidGrantIdException",
            "InvalidAliasNameException",
            "LimitExceededException",
            "TagException",
            "ConflictException",
            "DryRunOperationException",
            "AccessDeniedException",
            "ValidationException",
            "SerializationException",
            "UnknownOperationException",
            "ThrottlingException",
            "KMSInternalException",
            "DependencyTimeoutException",
            "KeyUnavailableException",
            "InvalidImportTokenException",
            "ExpiredImportTokenException",
            "IncorrectKeyMaterialException",
            "MalformedPolicyDocumentException",
        ]
    );
    for k in ErrorKind::ALL {
        assert_eq!(ErrorKind::from_aws_name(k.aws_name()), Some(k));
    }
    assert_eq!(ErrorKind::from_aws_name("com.amazonaws.kms#NotFoundException"), Some(ErrorKind::NotFound));
    assert_eq!(ErrorKind::from_aws_name("NotFoundException:http://x"), Some(ErrorKind::NotFound));
    assert_eq!(ErrorKind::from_aws_name("NoSuchThing"), None);
}

#[test]
fn client_errors_are_400_and_faults_500_or_503() {
    for k in ErrorKind::ALL {
        let expected = match k {
            ErrorKind::KMSInternal | ErrorKind::KeyUnavailable => 500,
            ErrorKind::DependencyTimeout => 503,
            _ => 400,
        };
        assert_eq!(k.http_status(), expected, "{k}");
    }
    assert_eq!(ErrorKind::Throttling.http_status(), 400, "legacy botocore retries throttling only with 400");
}

#[test]
fn only_faults_and_throttling_are_retryable() {
    let retryable: Vec<ErrorKind> = ErrorKind::ALL.into_iter().filter(|k| k.retryable()).collect();
    assert_eq!(
        retryable,
        [ErrorKind::Throttling, ErrorKind::KMSInternal, ErrorKind::DependencyTimeout, ErrorKind::KeyUnavailable]
    );
}

#[test]
fn error_displays_name_colon_message_and_serializes_to_the_aws_envelope() {
    let arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let e = KmsError::pending_deletion(arn);
    assert_eq!(e.to_string(), format!("KMSInvalidStateException: {arn} is pending deletion."));
    assert_eq!(
        e.to_json(),
        json!({"__type": "KMSInvalidStateException", "message": format!("{arn} is pending deletion.")})
    );
    assert_eq!(KmsError::invalid_ciphertext().to_string(), "InvalidCiphertextException");
    assert_eq!(
        KmsError::invalid_ciphertext().to_json(),
        json!({"__type": "InvalidCiphertextException", "message": ""})
    );
}

#[test]
fn state_error_constructors_use_aws_texts() {
    let a = "arn:aws:kms:us-east-1:111122223333:key/k";
    let table: Vec<(KmsError, ErrorKind, String)> = vec![
        (KmsError::disabled(a), ErrorKind::Disabled, format!("{a} is disabled.")),
        (KmsError::pending_deletion(a), ErrorKind::KMSInvalidState, format!("{a} is pending deletion.")),
        (KmsError::not_pending_deletion(a), ErrorKind::KMSInvalidState, format!("{a} is not pending deletion.")),
        (KmsError::pending_import(a), ErrorKind::KMSInvalidState, format!("{a} is pending import.")),
        (KmsError::unavailable(a), ErrorKind::KMSInvalidState, format!("{a} is unavailable.")),
        (KmsError::key_not_found(a), ErrorKind::NotFound, format!("Key '{a}' does not exist")),
        (KmsError::invalid_key_id("fake-key-id"), ErrorKind::NotFound, "Invalid keyId 'fake-key-id'".into()),
        (KmsError::wrong_region_arn("ap-southeast-1"), ErrorKind::NotFound, "Invalid arn ap-southeast-1".into()),
        (
            KmsError::incorrect_key(),
            ErrorKind::IncorrectKey,
            "The key ID in the request does not identify a CMK that can perform this operation.".into(),
        ),
        (
            KmsError::on_demand_rotation_limit(a),
            ErrorKind::LimitExceeded,
            format!("The on-demand rotations limit has been reached for the given keyId. No more on-demand rotations can be performed for this key: {a}"),
        ),
        (KmsError::too_many_tags(), ErrorKind::Tag, "Too many tags".into()),
        (KmsError::duplicate_tag_keys(), ErrorKind::Tag, "Duplicate tag keys".into()),
        (KmsError::reserved_tag(), ErrorKind::Tag, "Tags beginning with aws: are reserved".into()),
        (
            KmsError::dry_run(),
            ErrorKind::DryRunOperation,
            "The request would have succeeded, but the DryRun option is set.".into(),
        ),
        (
            KmsError::invalid_key_usage(a, "SIGN_VERIFY", "Encrypt"),
            ErrorKind::InvalidKeyUsage,
            format!("{a} key usage is SIGN_VERIFY which is not valid for Encrypt."),
        ),
    ];
    for (e, kind, message) in table {
        assert_eq!((e.kind, e.message), (kind, message));
    }
}

#[test]
fn validation_messages_follow_the_aws_format() {
    let one =
        validation_error(&[violation(Shown::Value("1025"), "numberOfBytes", "have value less than or equal to 1024")]);
    assert_eq!(
        one.message,
        "1 validation error detected: Value '1025' at 'numberOfBytes' failed to satisfy constraint: Member must have value less than or equal to 1024"
    );
    let two = validation_error(&[
        violation(Shown::Hidden, "plaintext", "have length less than or equal to 4096"),
        violation(Shown::Null, "keyId", "not be null"),
    ]);
    assert_eq!(
        two.message,
        "2 validation errors detected: Value at 'plaintext' failed to satisfy constraint: Member must have length less than or equal to 4096; \
         Value null at 'keyId' failed to satisfy constraint: Member must not be null"
    );
    assert_eq!(two.kind, ErrorKind::Validation);
}

const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
const ME: &str = "111122223333";

#[test]
fn key_ids_are_canonical_lowercase_uuids() {
    let id = KeyId::parse(ID).expect("canonical id parses");
    assert_eq!(id.to_string(), ID);
    assert_eq!(format!("{id:?}"), format!("KeyId({ID})"));
    for bad in [
        "1234ABCD-12AB-34CD-56EF-1234567890AB",
        "1234abcd12ab34cd56ef1234567890ab",
        "{1234abcd-12ab-34cd-56ef-1234567890ab}",
        "1234abcd-12ab-34cd-56ef-1234567890a",
        "1234abcd-12ab-34cd-56ef-1234567890abc",
        "1234abcg-12ab-34cd-56ef-1234567890ab",
        "mrk-1234abcd12ab34cd56ef1234567890ab",
        "",
    ] {
        assert_eq!(KeyId::parse(bad), None, "{bad}");
        let err = bad.parse::<KeyId>().unwrap_err();
        assert_eq!((err.kind, err.message), (ErrorKind::NotFound, format!("Invalid keyId '{bad}'")));
    }
}

#[test]
fn arns_are_built_from_the_realm() {
    let realm = Realm { partition: "aws-cn".into(), region: "cn-north-1".into() };
    let id = KeyId::parse(ID).unwrap();
    assert_eq!(realm.key_arn(ME, &id), format!("arn:aws-cn:kms:cn-north-1:{ME}:key/{ID}"));
    assert_eq!(realm.alias_arn(ME, "alias/app"), format!("arn:aws-cn:kms:cn-north-1:{ME}:alias/app"));
    assert_eq!(Realm::default(), Realm { partition: "aws".into(), region: "us-east-1".into() });
}

#[test]
fn key_references_resolve_per_aws_rules() {
    let realm = Realm::default();
    let id = KeyId::parse(ID).unwrap();
    let key = |account: &str| Ok(KeyRef::Key { account: account.into(), key_id: id });
    let alias = |account: &str, name: &str| Ok(KeyRef::Alias { account: account.into(), alias_name: name.into() });
    let not_found = |m: &str| Err((ErrorKind::NotFound, m.to_owned()));
    let invalid_arn =
        |input: &str| Err((ErrorKind::InvalidArn, format!("{input} is not a valid KMS key or alias ARN.")));
    let no_alias = Err((ErrorKind::InvalidArn, "Key Aliases are not supported for this operation.".to_owned()));
    type Expected = Result<KeyRef, (ErrorKind, String)>;
    let table: Vec<(&str, bool, Expected)> = vec![
        (ID, false, key(ME)),
        (ID, true, key(ME)),
        ("arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", false, key(ME)),
        ("arn:aws:kms:us-east-1:444455556666:key/1234abcd-12ab-34cd-56ef-1234567890ab", false, key("444455556666")),
        ("alias/app", true, alias(ME, "alias/app")),
        ("arn:aws:kms:us-east-1:444455556666:alias/app", true, alias("444455556666", "alias/app")),
        ("alias/app", false, no_alias.clone()),
        ("arn:aws:kms:us-east-1:111122223333:alias/app", false, no_alias),
        ("fake-key-id", true, not_found("Invalid keyId 'fake-key-id'")),
        ("134f2428cec14b25a1ae9048164dba47", false, not_found("Invalid keyId '134f2428cec14b25a1ae9048164dba47'")),
        ("mrk-fake-key-id", true, not_found("Invalid keyId 'mrk-fake-key-id'")),
        (
            "arn:aws:kms:ap-southeast-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            false,
            not_found("Invalid arn ap-southeast-1"),
        ),
        ("arn:aws:kms:us-east-1:111122223333:key/nope", false, not_found("Invalid keyId 'nope'")),
        (
            "arn:aws:kms:us-east-1:1111222233:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            false,
            invalid_arn("arn:aws:kms:us-east-1:1111222233:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        ),
        (
            "arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            false,
            invalid_arn("arn:aws:s3:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        ),
        (
            "arn:aws:kms:us-east-1:111122223333:grant/x",
            false,
            invalid_arn("arn:aws:kms:us-east-1:111122223333:grant/x"),
        ),
        ("arn:aws:kms", false, invalid_arn("arn:aws:kms")),
        (
            "arn:aws-cn:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            false,
            invalid_arn("arn:aws-cn:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"),
        ),
    ];
    for (input, allow_alias, expected) in table {
        let got = parse_key_ref(input, &realm, ME, allow_alias).map_err(|e| (e.kind, e.message));
        assert_eq!(got, expected, "{input} (allow_alias {allow_alias})");
    }
}
