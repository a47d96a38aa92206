//! parse_request: AWS JSON 1.1 bodies → typed requests, with AWS's error names and message
//! formats (aws-kms-api.md §1.1, §1.3, §2, §4.4, §4.6).

use base64::Engine as _;
use keyledger_kms::api::limits;
use keyledger_kms::api::{DataKeySpec, EncryptionAlgorithm, IncludeKeyMaterial, KeySpec, KeyUsage, Origin};
use keyledger_kms::{parse_request, ErrorKind, Operation, Request};

const KEY: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn err(op: Operation, body: &str) -> (ErrorKind, String) {
    match parse_request(op, body.as_bytes()) {
        Ok(r) => panic!("{op} {body} parsed: {r:?}"),
        Err(e) => (e.kind, e.message),
    }
}

/// The expected one-violation message; echoed values are cut at 256 characters + `...`.
fn v1(value: &str, member: &str, rule: &str) -> (ErrorKind, String) {
    let shown = match value.char_indices().nth(256) {
        Some((cut, _)) => format!("{}...", &value[..cut]),
        None => value.to_owned(),
    };
    (
        ErrorKind::Validation,
        format!("1 validation error detected: Value '{shown}' at '{member}' failed to satisfy constraint: Member must {rule}"),
    )
}

fn v1_hidden(member: &str, rule: &str) -> (ErrorKind, String) {
    (
        ErrorKind::Validation,
        format!("1 validation error detected: Value at '{member}' failed to satisfy constraint: Member must {rule}"),
    )
}

fn v1_null(member: &str) -> (ErrorKind, String) {
    (
        ErrorKind::Validation,
        format!("1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"),
    )
}

fn ser(message: &str) -> (ErrorKind, String) {
    (ErrorKind::Serialization, message.to_owned())
}

#[test]
fn malformed_bodies_are_serialization_exceptions() {
    let table: Vec<(Operation, String, (ErrorKind, String))> = vec![
        (Operation::DescribeKey, "{".into(), ser("The request body is not valid JSON.")),
        (Operation::DescribeKey, "{\"KeyId\": }".into(), ser("The request body is not valid JSON.")),
        (Operation::DescribeKey, "[]".into(), ser("The request body must be a JSON object.")),
        (Operation::DescribeKey, "\"KeyId\"".into(), ser("The request body must be a JSON object.")),
        (Operation::DescribeKey, "{\"KeyId\": 5}".into(), ser("Member 'KeyId' must be a string.")),
        (
            Operation::GenerateRandom,
            "{\"NumberOfBytes\": \"32\"}".into(),
            ser("Member 'NumberOfBytes' must be an integer."),
        ),
        (
            Operation::GenerateRandom,
            "{\"NumberOfBytes\": 3.5}".into(),
            ser("Member 'NumberOfBytes' must be an integer."),
        ),
        (
            Operation::Encrypt,
            format!("{{\"KeyId\":\"{KEY}\",\"Plaintext\":\"not base64!\"}}"),
            ser("Member 'Plaintext' must be a base64-encoded blob."),
        ),
        (
            Operation::Encrypt,
            format!("{{\"KeyId\":\"{KEY}\",\"Plaintext\":\"AA==\",\"EncryptionContext\":[\"a\"]}}"),
            ser("Member 'EncryptionContext' must be a map of strings to strings."),
        ),
        (
            Operation::Encrypt,
            format!("{{\"KeyId\":\"{KEY}\",\"Plaintext\":\"AA==\",\"EncryptionContext\":{{\"a\":1}}}}"),
            ser("Member 'EncryptionContext' must be a map of strings to strings."),
        ),
        (
            Operation::Encrypt,
            format!("{{\"KeyId\":\"{KEY}\",\"Plaintext\":\"AA==\",\"DryRun\":\"yes\"}}"),
            ser("Member 'DryRun' must be a boolean."),
        ),
        (
            Operation::DescribeKey,
            format!("{{\"KeyId\":\"{KEY}\",\"GrantTokens\":\"t\"}}"),
            ser("Member 'GrantTokens' must be a list of strings."),
        ),
        (
            Operation::TagResource,
            format!("{{\"KeyId\":\"{KEY}\",\"Tags\":[\"a\"]}}"),
            ser("Member 'Tags' must be a list of Tag structures."),
        ),
        (Operation::Decrypt, "{\"CiphertextBlob\": 12}".into(), ser("Member 'CiphertextBlob' must be a string.")),
    ];
    for (op, body, expected) in table {
        assert_eq!(err(op, &body), expected, "{op} {body}");
    }
}

#[test]
fn missing_required_members_are_reported_as_null() {
    assert_eq!(err(Operation::DescribeKey, "{}"), v1_null("keyId"));
    assert_eq!(err(Operation::EnableKey, "{\"KeyId\": null}"), v1_null("keyId"));
    assert_eq!(err(Operation::CreateAlias, &format!("{{\"TargetKeyId\":\"{KEY}\"}}")), v1_null("aliasName"));
    assert_eq!(err(Operation::Decrypt, "{}"), v1_null("ciphertextBlob"));
    assert_eq!(err(Operation::TagResource, &format!("{{\"KeyId\":\"{KEY}\"}}")), v1_null("tags"));
    // Several violations are reported together.
    assert_eq!(
        err(Operation::Encrypt, "{}"),
        (
            ErrorKind::Validation,
            "2 validation errors detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null; \
             Value null at 'plaintext' failed to satisfy constraint: Member must not be null"
                .to_owned()
        )
    );
}

#[test]
fn unknown_members_are_ignored() {
    let r = parse_request(
        Operation::DescribeKey,
        format!("{{\"KeyId\":\"{KEY}\",\"FutureMember\":{{\"x\":[1,2]}}}}").as_bytes(),
    )
    .unwrap();
    let Request::DescribeKey(r) = r else { panic!() };
    assert_eq!(r.key_id, KEY);
    assert!(r.grant_tokens.is_empty());
    // An empty body is an empty object.
    let Request::ListKeys(l) = parse_request(Operation::ListKeys, b"").unwrap() else { panic!() };
    assert_eq!((l.limit, l.marker), (100, None));
}

#[test]
fn plaintext_is_1_to_4096_bytes_and_its_value_is_never_echoed() {
    let body = |n: usize| format!("{{\"KeyId\":\"{KEY}\",\"Plaintext\":\"{}\"}}", b64(&vec![0x41; n]));
    assert_eq!(err(Operation::Encrypt, &body(4097)), v1_hidden("plaintext", "have length less than or equal to 4096"));
    assert_eq!(err(Operation::Encrypt, &body(0)), v1_hidden("plaintext", "have length greater than or equal to 1"));
    for n in [1, 4096] {
        let Request::Encrypt(r) = parse_request(Operation::Encrypt, body(n).as_bytes()).unwrap() else { panic!() };
        assert_eq!(r.plaintext.len(), n);
        assert_eq!(r.plaintext.as_bytes(), vec![0x41; n].as_slice());
        let debug = format!("{r:?}");
        assert!(!debug.contains("AAAA") && !debug.contains("65, 65"), "plaintext leaked into Debug: {debug}");
        assert!(debug.contains(&format!("<redacted {n} bytes>")));
    }
}

#[test]
fn ciphertext_blob_is_1_to_6144_bytes() {
    let body = |n: usize| format!("{{\"CiphertextBlob\":\"{}\"}}", b64(&vec![1; n]));
    assert_eq!(
        err(Operation::Decrypt, &body(6145)),
        v1_hidden("ciphertextBlob", "have length less than or equal to 6144")
    );
    assert_eq!(
        err(Operation::Decrypt, &body(0)),
        v1_hidden("ciphertextBlob", "have length greater than or equal to 1")
    );
    let Request::Decrypt(r) = parse_request(Operation::Decrypt, body(6144).as_bytes()).unwrap() else { panic!() };
    assert_eq!(r.ciphertext_blob.unwrap().len(), 6144);
    // Unpadded base64 is accepted too.
    let Request::Decrypt(r) =
        parse_request(Operation::Decrypt, b"{\"CiphertextBlob\":\"AQID\",\"KeyId\":\"alias/x\"}").unwrap()
    else {
        panic!()
    };
    assert_eq!(r.ciphertext_blob.unwrap(), vec![1, 2, 3]);
    assert_eq!(r.key_id.as_deref(), Some("alias/x"));
}

#[test]
fn decrypt_dry_run_with_ignore_ciphertext_needs_a_key_id_instead_of_a_blob() {
    let Request::Decrypt(r) = parse_request(
        Operation::Decrypt,
        format!("{{\"DryRun\":true,\"DryRunModifiers\":[\"IGNORE_CIPHERTEXT\"],\"KeyId\":\"{KEY}\"}}").as_bytes(),
    )
    .unwrap() else {
        panic!()
    };
    assert!(r.ignore_ciphertext() && r.dry_run && r.ciphertext_blob.is_none());
    assert_eq!(
        err(Operation::Decrypt, "{\"DryRun\":true,\"DryRunModifiers\":[\"IGNORE_CIPHERTEXT\"]}"),
        (ErrorKind::Validation, "KeyId is required when DryRunModifiers contains IGNORE_CIPHERTEXT.".to_owned())
    );
    assert_eq!(
        err(Operation::Decrypt, "{\"CiphertextBlob\":\"AQ==\",\"DryRunModifiers\":[\"NOPE\"]}"),
        v1("NOPE", "dryRunModifiers.1.member", "satisfy enum value set: [IGNORE_CIPHERTEXT]")
    );
}

#[test]
fn generate_data_key_needs_exactly_one_of_key_spec_and_number_of_bytes() {
    let either = (ErrorKind::Validation, "Please specify either number of bytes or key spec.".to_owned());
    for op in [Operation::GenerateDataKey, Operation::GenerateDataKeyWithoutPlaintext] {
        assert_eq!(err(op, &format!("{{\"KeyId\":\"{KEY}\"}}")), either, "{op} neither");
        assert_eq!(
            err(op, &format!("{{\"KeyId\":\"{KEY}\",\"KeySpec\":\"AES_256\",\"NumberOfBytes\":32}}")),
            either,
            "{op} both"
        );
        assert_eq!(
            err(op, &format!("{{\"KeyId\":\"{KEY}\",\"NumberOfBytes\":1025}}")),
            v1("1025", "numberOfBytes", "have value less than or equal to 1024")
        );
        assert_eq!(
            err(op, &format!("{{\"KeyId\":\"{KEY}\",\"NumberOfBytes\":0}}")),
            v1("0", "numberOfBytes", "have value greater than or equal to 1")
        );
        assert_eq!(
            err(op, &format!("{{\"KeyId\":\"{KEY}\",\"KeySpec\":\"AES_257\"}}")),
            v1("AES_257", "keySpec", "satisfy enum value set: [AES_256, AES_128]")
        );
    }
    let cases = [
        ("\"KeySpec\":\"AES_256\"", 32),
        ("\"KeySpec\":\"AES_128\"", 16),
        ("\"NumberOfBytes\":1", 1),
        ("\"NumberOfBytes\":1024", 1024),
    ];
    for (member, len) in cases {
        let r =
            parse_request(Operation::GenerateDataKey, format!("{{\"KeyId\":\"{KEY}\",{member}}}").as_bytes()).unwrap();
        let Request::GenerateDataKey(r) = r else { panic!() };
        assert_eq!(r.data_key_len(), len);
    }
    let Request::GenerateDataKeyWithoutPlaintext(r) = parse_request(
        Operation::GenerateDataKeyWithoutPlaintext,
        format!("{{\"KeyId\":\"{KEY}\",\"KeySpec\":\"AES_128\"}}").as_bytes(),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(r.key_spec, Some(DataKeySpec::Aes128));
}

#[test]
fn generate_random_needs_1_to_1024_bytes() {
    assert_eq!(err(Operation::GenerateRandom, "{}"), (ErrorKind::Validation, "NumberOfBytes is required.".to_owned()));
    assert_eq!(
        err(Operation::GenerateRandom, "{\"NumberOfBytes\":0}"),
        v1("0", "numberOfBytes", "have value greater than or equal to 1")
    );
    assert_eq!(
        err(Operation::GenerateRandom, "{\"NumberOfBytes\":1025}"),
        v1("1025", "numberOfBytes", "have value less than or equal to 1024")
    );
    for n in [1, 1024] {
        let Request::GenerateRandom(r) =
            parse_request(Operation::GenerateRandom, format!("{{\"NumberOfBytes\":{n}}}").as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.number_of_bytes, n);
    }
    assert_eq!(
        err(Operation::GenerateRandom, "{\"NumberOfBytes\":8,\"CustomKeyStoreId\":\"cks-1\"}").0,
        ErrorKind::UnsupportedOperation
    );
    assert_eq!(
        err(Operation::GenerateRandom, "{\"NumberOfBytes\":8,\"Recipient\":{}}").0,
        ErrorKind::UnsupportedOperation
    );
}

#[test]
fn grant_tokens_are_at_most_10() {
    let tokens = |n: usize| format!("{{\"KeyId\":\"{KEY}\",\"GrantTokens\":[{}]}}", vec!["\"t\""; n].join(","));
    assert_eq!(
        err(Operation::DescribeKey, &tokens(11)),
        v1_hidden("grantTokens", "have length less than or equal to 10")
    );
    let Request::DescribeKey(r) = parse_request(Operation::DescribeKey, tokens(10).as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(r.grant_tokens.len(), 10);
    assert_eq!(
        err(Operation::DescribeKey, &format!("{{\"KeyId\":\"{KEY}\",\"GrantTokens\":[\"\"]}}")),
        v1_hidden("grantTokens.1.member", "have length greater than or equal to 1")
    );
}

#[test]
fn key_id_is_1_to_2048_characters() {
    let long = "k".repeat(2049);
    assert_eq!(
        err(Operation::DescribeKey, &format!("{{\"KeyId\":\"{long}\"}}")),
        v1(&long, "keyId", "have length less than or equal to 2048")
    );
    assert_eq!(
        err(Operation::DescribeKey, "{\"KeyId\":\"\"}"),
        v1("", "keyId", "have length greater than or equal to 1")
    );
    assert!(parse_request(Operation::DescribeKey, format!("{{\"KeyId\":\"{}\"}}", "k".repeat(2048)).as_bytes()).is_ok());
}

#[test]
fn list_limits_follow_each_operation_range() {
    let table = [
        (Operation::ListKeys, "", 1000, 100),
        (Operation::ListAliases, "", 100, 50),
        (Operation::ListKeyRotations, &*format!("\"KeyId\":\"{KEY}\","), 1000, 100),
        (Operation::ListResourceTags, &*format!("\"KeyId\":\"{KEY}\","), 50, 50),
    ];
    for (op, prefix, max, default) in table {
        let body = |limit: i64| format!("{{{prefix}\"Limit\":{limit}}}");
        assert_eq!(err(op, &body(0)), v1("0", "limit", "have value greater than or equal to 1"), "{op}");
        assert_eq!(
            err(op, &body(max + 1)),
            v1(&(max + 1).to_string(), "limit", &format!("have value less than or equal to {max}")),
            "{op}"
        );
        let limit_of = |r: Request| match r {
            Request::ListKeys(r) => r.limit,
            Request::ListAliases(r) => r.limit,
            Request::ListKeyRotations(r) => r.limit,
            Request::ListResourceTags(r) => r.limit,
            _ => unreachable!(),
        };
        assert_eq!(limit_of(parse_request(op, body(1).as_bytes()).unwrap()), 1);
        assert_eq!(limit_of(parse_request(op, body(max).as_bytes()).unwrap()), max as u32);
        let no_limit = format!("{{{}}}", prefix.trim_end_matches(','));
        assert_eq!(limit_of(parse_request(op, no_limit.as_bytes()).unwrap()), default);
    }
    assert_eq!(
        err(Operation::ListKeys, "{\"Marker\":\"\"}"),
        v1("", "marker", "have length greater than or equal to 1")
    );
    assert_eq!(
        err(Operation::ListKeys, "{\"Marker\":\"a\u{0100}\"}"),
        v1("a\u{0100}", "marker", "satisfy regular expression pattern: [\\u0020-\\u00FF]*")
    );
    let Request::ListKeyRotations(r) = parse_request(
        Operation::ListKeyRotations,
        format!("{{\"KeyId\":\"{KEY}\",\"IncludeKeyMaterial\":\"ALL_KEY_MATERIAL\"}}").as_bytes(),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(r.include_key_material, IncludeKeyMaterial::AllKeyMaterial);
}

#[test]
fn deletion_window_is_7_to_30_days_default_30() {
    let body = |d: i64| format!("{{\"KeyId\":\"{KEY}\",\"PendingWindowInDays\":{d}}}");
    assert_eq!(
        err(Operation::ScheduleKeyDeletion, &body(6)),
        v1("6", "pendingWindowInDays", "have value greater than or equal to 7")
    );
    assert_eq!(
        err(Operation::ScheduleKeyDeletion, &body(31)),
        v1("31", "pendingWindowInDays", "have value less than or equal to 30")
    );
    assert_eq!(
        err(Operation::ScheduleKeyDeletion, &body(365)).0,
        ErrorKind::Validation,
        "the model's 365 is not the service's"
    );
    for (body, days) in [(body(7), 7), (body(30), 30), (format!("{{\"KeyId\":\"{KEY}\"}}"), 30)] {
        let Request::ScheduleKeyDeletion(r) = parse_request(Operation::ScheduleKeyDeletion, body.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.pending_window_in_days, days);
    }
}

#[test]
fn rotation_period_is_90_to_2560_days_default_365() {
    let body = |d: i64| format!("{{\"KeyId\":\"{KEY}\",\"RotationPeriodInDays\":{d}}}");
    assert_eq!(
        err(Operation::EnableKeyRotation, &body(89)),
        v1("89", "rotationPeriodInDays", "have value greater than or equal to 90")
    );
    assert_eq!(
        err(Operation::EnableKeyRotation, &body(2561)),
        v1("2561", "rotationPeriodInDays", "have value less than or equal to 2560")
    );
    for (body, days) in [(body(90), 90), (body(2560), 2560), (format!("{{\"KeyId\":\"{KEY}\"}}"), 365)] {
        let Request::EnableKeyRotation(r) = parse_request(Operation::EnableKeyRotation, body.as_bytes()).unwrap()
        else {
            panic!()
        };
        assert_eq!(r.rotation_period_in_days, days);
    }
}

#[test]
fn description_is_at_most_8192_characters() {
    let d = |n: usize| format!("{{\"Description\":\"{}\"}}", "é".repeat(n));
    let (kind, message) = err(Operation::CreateKey, &d(8193));
    assert_eq!(kind, ErrorKind::Validation);
    assert!(message.ends_with(
        "at 'description' failed to satisfy constraint: Member must have length less than or equal to 8192"
    ));
    let Request::CreateKey(r) = parse_request(Operation::CreateKey, d(8192).as_bytes()).unwrap() else { panic!() };
    assert_eq!(r.description.chars().count(), 8192);
    assert!(parse_request(
        Operation::UpdateKeyDescription,
        format!("{{\"KeyId\":\"{KEY}\",\"Description\":\"\"}}").as_bytes()
    )
    .is_ok());
}

#[test]
fn tag_keys_are_1_to_128_and_values_0_to_256_characters() {
    let tags = |k: &str, v: &str| {
        format!("{{\"KeyId\":\"{KEY}\",\"Tags\":[{{\"TagKey\":\"ok\",\"TagValue\":\"\"}},{{\"TagKey\":\"{k}\",\"TagValue\":\"{v}\"}}]}}")
    };
    let k129 = "k".repeat(129);
    let v257 = "v".repeat(257);
    assert_eq!(
        err(Operation::TagResource, &tags(&k129, "")),
        v1(&k129, "tags.2.member.tagKey", "have length less than or equal to 128")
    );
    assert_eq!(
        err(Operation::TagResource, &tags("", "")),
        v1("", "tags.2.member.tagKey", "have length greater than or equal to 1")
    );
    assert_eq!(
        err(Operation::TagResource, &tags("k", &v257)),
        v1(&v257, "tags.2.member.tagValue", "have length less than or equal to 256")
    );
    let Request::TagResource(r) =
        parse_request(Operation::TagResource, tags(&"k".repeat(128), &"v".repeat(256)).as_bytes()).unwrap()
    else {
        panic!()
    };
    assert_eq!(r.tags.len(), 2);
    assert_eq!(r.tags[0].value, "");
    assert_eq!(
        err(Operation::TagResource, &format!("{{\"KeyId\":\"{KEY}\",\"Tags\":[{{\"TagKey\":\"k\"}}]}}")),
        v1_null("tags.1.member.tagValue")
    );
    assert_eq!(
        err(Operation::UntagResource, &format!("{{\"KeyId\":\"{KEY}\",\"TagKeys\":[\"a\",\"{k129}\"]}}")),
        v1(&k129, "tagKeys.2.member", "have length less than or equal to 128")
    );
}

#[test]
fn encryption_context_has_keyledgers_documented_caps() {
    let ec = |pairs: Vec<(String, String)>| {
        let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
        format!("{{\"KeyId\":\"{KEY}\",\"Plaintext\":\"AA==\",\"EncryptionContext\":{{{}}}}}", inner.join(","))
    };
    let n_pairs = |n: usize| (0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect::<Vec<_>>();
    assert!(parse_request(Operation::Encrypt, ec(n_pairs(limits::MAX_ENCRYPTION_CONTEXT_PAIRS)).as_bytes()).is_ok());
    assert_eq!(
        err(Operation::Encrypt, &ec(n_pairs(65))),
        v1_hidden("encryptionContext", "have number of entries less than or equal to 64")
    );
    assert_eq!(
        err(Operation::Encrypt, &ec(vec![(String::new(), "v".into())])),
        v1_hidden("encryptionContext", "have keys of length greater than or equal to 1")
    );
    assert!(parse_request(Operation::Encrypt, ec(vec![("k".repeat(2048), String::new())]).as_bytes()).is_ok());
    assert_eq!(
        err(Operation::Encrypt, &ec(vec![("k".repeat(2049), "v".into())])),
        v1_hidden("encryptionContext", "have keys of length less than or equal to 2048 bytes")
    );
    assert_eq!(
        err(Operation::Encrypt, &ec(vec![("k".into(), "v".repeat(2049))])),
        v1_hidden("encryptionContext", "have values of length less than or equal to 2048 bytes")
    );
    let big: Vec<(String, String)> = (0..4).map(|i| (format!("k{i}"), "v".repeat(2046))).collect(); // 4 * 2048 = 8192
    assert!(parse_request(Operation::Encrypt, ec(big.clone()).as_bytes()).is_ok());
    let mut bigger = big;
    bigger.push(("x".into(), String::new()));
    assert_eq!(
        err(Operation::Encrypt, &ec(bigger)),
        v1_hidden("encryptionContext", "have a total size of keys and values less than or equal to 8192 bytes")
    );
    // Sorted by key, whatever the JSON order.
    let Request::Encrypt(r) =
        parse_request(Operation::Encrypt, ec(vec![("b".into(), "2".into()), ("a".into(), "1".into())]).as_bytes())
            .unwrap()
    else {
        panic!()
    };
    assert_eq!(r.encryption_context.keys().collect::<Vec<_>>(), ["a", "b"]);
}

#[test]
fn encryption_algorithm_must_be_an_aws_value() {
    assert_eq!(
        err(
            Operation::Encrypt,
            &format!("{{\"KeyId\":\"{KEY}\",\"Plaintext\":\"AA==\",\"EncryptionAlgorithm\":\"AES\"}}")
        ),
        v1(
            "AES",
            "encryptionAlgorithm",
            "satisfy enum value set: [SYMMETRIC_DEFAULT, RSAES_OAEP_SHA_1, RSAES_OAEP_SHA_256, SM2PKE]"
        )
    );
    let Request::ReEncrypt(r) = parse_request(
        Operation::ReEncrypt,
        format!("{{\"CiphertextBlob\":\"AQ==\",\"DestinationKeyId\":\"{KEY}\",\"DestinationEncryptionAlgorithm\":\"RSAES_OAEP_SHA_256\"}}").as_bytes(),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(r.destination_encryption_algorithm, Some(EncryptionAlgorithm::RsaesOaepSha256));
    assert_eq!(r.source_encryption_algorithm, None);
}

#[test]
fn alias_names_follow_the_aws_rules() {
    let body = |name: &str| format!("{{\"AliasName\":\"{name}\",\"TargetKeyId\":\"{KEY}\"}}");
    let prefix = (
        ErrorKind::Validation,
        "Alias must start with the prefix \"alias/\". Please see https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
            .to_owned(),
    );
    let table: Vec<(String, (ErrorKind, String))> = vec![
        ("app".into(), prefix.clone()),
        ("aliasapp".into(), prefix),
        (
            "alias/Service:Test".into(),
            (ErrorKind::Validation, "alias/Service:Test contains invalid characters for an alias".into()),
        ),
        ("alias/a b".into(), v1("alias/a b", "aliasName", "satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$")),
        (
            format!("alias/{}", "a".repeat(251)),
            v1(&format!("alias/{}", "a".repeat(251)), "aliasName", "have length less than or equal to 256"),
        ),
        (
            "alias/aws/s3".into(),
            (
                ErrorKind::InvalidAliasName,
                "alias/aws/s3 is not a valid alias name: the prefix alias/aws/ is reserved for AWS managed keys."
                    .into(),
            ),
        ),
        ("alias/".into(), (ErrorKind::InvalidAliasName, "Alias name must have a name after the alias/ prefix.".into())),
    ];
    for (name, expected) in table {
        assert_eq!(err(Operation::CreateAlias, &body(&name)), expected, "{name}");
        assert_eq!(err(Operation::UpdateAlias, &body(&name)), expected, "{name}");
        assert_eq!(err(Operation::DeleteAlias, &format!("{{\"AliasName\":\"{name}\"}}")), expected, "{name}");
    }
    let ok = format!("alias/{}", "a".repeat(250));
    let Request::CreateAlias(r) = parse_request(Operation::CreateAlias, body(&ok).as_bytes()).unwrap() else {
        panic!()
    };
    assert_eq!(r.alias_name, ok);
    assert!(parse_request(Operation::CreateAlias, body("alias/My_app-1/x").as_bytes()).is_ok());
}

#[test]
fn create_key_defaults_to_a_symmetric_aws_kms_key() {
    let Request::CreateKey(r) = parse_request(Operation::CreateKey, b"{}").unwrap() else { panic!() };
    assert_eq!(
        (r.key_spec, r.key_usage, r.origin),
        (KeySpec::SymmetricDefault, KeyUsage::EncryptDecrypt, Origin::AwsKms)
    );
    assert_eq!(r.description, "");
    assert!(r.tags.is_empty());
    let Request::CreateKey(r) = parse_request(
        Operation::CreateKey,
        br#"{"Description":"d","KeySpec":"SYMMETRIC_DEFAULT","KeyUsage":"ENCRYPT_DECRYPT","Origin":"AWS_KMS","MultiRegion":false,
            "BypassPolicyLockoutSafetyCheck":true,"Tags":[{"TagKey":"team","TagValue":"kms"}]}"#,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(r.description, "d");
    assert!(r.bypass_policy_lockout_safety_check);
    assert_eq!(r.tags[0].key, "team");
    let Request::CreateKey(r) =
        parse_request(Operation::CreateKey, br#"{"CustomerMasterKeySpec":"SYMMETRIC_DEFAULT"}"#).unwrap()
    else {
        panic!()
    };
    assert_eq!(r.key_spec, KeySpec::SymmetricDefault);
}

#[test]
fn create_key_validation_and_unsupported_values() {
    let unsupported = |m: &str| (ErrorKind::UnsupportedOperation, m.to_owned());
    let table: Vec<(&str, (ErrorKind, String))> = vec![
        (r#"{"KeySpec":"RSA_1024"}"#, v1("RSA_1024", "keySpec", &format!("satisfy enum value set: {}", KeySpec::value_set()))),
        (r#"{"KeyUsage":"RANDOM"}"#, v1("RANDOM", "keyUsage", "satisfy enum value set: [ENCRYPT_DECRYPT, SIGN_VERIFY, GENERATE_VERIFY_MAC, KEY_AGREEMENT, ENCAPSULATE_DECAPSULATE]")),
        (r#"{"Origin":"MARS"}"#, v1("MARS", "origin", "satisfy enum value set: [AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE]")),
        (r#"{"CustomerMasterKeySpec":"ML_DSA_44"}"#, (ErrorKind::Validation, "1 validation error detected: Value 'ML_DSA_44' at 'customerMasterKeySpec' failed to satisfy constraint: Member must satisfy enum value set: [SYMMETRIC_DEFAULT, RSA_2048, RSA_3072, RSA_4096, ECC_NIST_P256, ECC_NIST_P384, ECC_NIST_P521, ECC_SECG_P256K1, HMAC_224, HMAC_256, HMAC_384, HMAC_512, SM2]".into())),
        (r#"{"KeySpec":"SYMMETRIC_DEFAULT","CustomerMasterKeySpec":"RSA_2048"}"#, (ErrorKind::Validation, "You cannot specify KeySpec and CustomerMasterKeySpec in the same request.".into())),
        (r#"{"KeySpec":"HMAC_256"}"#, (ErrorKind::Validation, "You must specify a KeyUsage value for all KMS keys except for symmetric encryption keys.".into())),
        (r#"{"KeySpec":"RSA_2048","KeyUsage":"KEY_AGREEMENT"}"#, (ErrorKind::Validation, "KeyUsage KEY_AGREEMENT is not compatible with KeySpec RSA_2048".into())),
        (r#"{"KeyUsage":"SIGN_VERIFY"}"#, (ErrorKind::Validation, "KeyUsage SIGN_VERIFY is not compatible with KeySpec SYMMETRIC_DEFAULT".into())),
        (r#"{"KeySpec":"RSA_2048","KeyUsage":"SIGN_VERIFY"}"#, unsupported("KeySpec RSA_2048 is not supported yet: Keyledger creates only SYMMETRIC_DEFAULT keys so far.")),
        (r#"{"KeySpec":"HMAC_256","KeyUsage":"GENERATE_VERIFY_MAC"}"#, unsupported("KeySpec HMAC_256 is not supported yet: Keyledger creates only SYMMETRIC_DEFAULT keys so far.")),
        (r#"{"Origin":"AWS_CLOUDHSM"}"#, unsupported("Origin AWS_CLOUDHSM is not supported: Keyledger has no custom key stores.")),
        (r#"{"CustomKeyStoreId":"cks-1234567890abcdef0"}"#, unsupported("Custom key stores (CustomKeyStoreId) are not supported.")),
        (r#"{"MultiRegion":true}"#, unsupported("Multi-Region keys (MultiRegion true) are not supported yet.")),
        (r#"{"Policy":""}"#, v1("", "policy", "have length greater than or equal to 1")),
    ];
    for (body, expected) in table {
        assert_eq!(err(Operation::CreateKey, body), expected, "{body}");
    }
}

#[test]
fn recipient_is_not_supported_yet() {
    let (kind, message) =
        err(Operation::GenerateDataKey, &format!("{{\"KeyId\":\"{KEY}\",\"NumberOfBytes\":32,\"Recipient\":{{}}}}"));
    assert_eq!(kind, ErrorKind::UnsupportedOperation);
    assert!(message.contains("not supported yet"));
    assert_eq!(
        err(Operation::Decrypt, "{\"CiphertextBlob\":\"AQ==\",\"Recipient\":{}}").0,
        ErrorKind::UnsupportedOperation
    );
    // GenerateDataKeyWithoutPlaintext has no Recipient member: ignored like any unknown member.
    assert!(parse_request(
        Operation::GenerateDataKeyWithoutPlaintext,
        format!("{{\"KeyId\":\"{KEY}\",\"NumberOfBytes\":32,\"Recipient\":{{}}}}").as_bytes()
    )
    .is_ok());
}

#[test]
fn every_operation_has_a_parser_and_names_round_trip() {
    assert_eq!(Operation::ALL.len(), 37);
    for op in Operation::all() {
        assert_eq!(Operation::from_name(op.name()), Some(op));
        // Every parser rejects a non-object body the same way.
        assert_eq!(err(op, "[1]").0, ErrorKind::Serialization, "{op}");
    }
    assert_eq!(Operation::GenerateDataKeyWithoutPlaintext.name(), "GenerateDataKeyWithoutPlaintext");
    assert_eq!(Operation::from_name("generatedatakey"), None);
    use keyledger_kms::Role::*;
    let roles: Vec<(Operation, keyledger_kms::Role)> = Operation::all().map(|op| (op, op.role())).collect();
    assert_eq!(roles.iter().filter(|(_, r)| *r == Management).count(), 21);
    assert_eq!(roles.iter().filter(|(_, r)| *r == Read).count(), 10);
    assert_eq!(roles.iter().filter(|(_, r)| *r == Crypto).count(), 6);
    assert_eq!(Operation::DescribeKey.role(), Read);
    assert_eq!(Operation::RotateKeyOnDemand.role(), Management);
    assert_eq!(Operation::GenerateRandom.role(), Crypto);
}

#[test]
fn request_reports_its_operation_and_supplied_key_id() {
    let r = parse_request(
        Operation::CreateAlias,
        format!("{{\"AliasName\":\"alias/a\",\"TargetKeyId\":\"{KEY}\"}}").as_bytes(),
    )
    .unwrap();
    assert_eq!(r.operation(), Operation::CreateAlias);
    assert_eq!(r.key_id(), Some(KEY));
    let r = parse_request(Operation::ListKeys, b"{}").unwrap();
    assert_eq!(r.key_id(), None);
}
