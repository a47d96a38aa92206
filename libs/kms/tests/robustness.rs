//! Deterministic randomized robustness of `parse_request`, the decoder of every AWS JSON body a
//! client sends: the CI counterpart of the `kms_request` fuzz target (`fuzz/`, which needs
//! libFuzzer).
//!
//! A small xorshift generator with fixed seeds drives three kinds of bodies for every
//! operation: random bytes, mutations of a valid body (bit flips, byte overwrites,
//! truncations, insertions, deletions, duplicated ranges), and random JSON objects built from
//! the operations' member names with values of every JSON type. Properties:
//! - `parse_request` never panics, and an accepted request is of the operation asked for;
//! - a body that is not UTF-8 or not JSON gets exactly `The request body is not valid JSON.`,
//!   a JSON value that is not an object exactly `The request body must be a JSON object.`;
//! - error messages grow at most linearly with the body (one violation per bad list item,
//!   and echoed member values, so there is no constant bound);
//! - `Plaintext` influences the outcome only through its decoded length, so no error message
//!   can carry any of it.

use keyledger_kms::{parse_request, ErrorKind, KmsError, Operation, Request};
use serde_json::Value;

/// xorshift64* (Vigna, "An experimental exploration of Marsaglia's xorshift generators").
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform-enough in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }
    /// A list length and the depth of its items: usually 0–3 items one level down, now and
    /// then up to 59 flat items (long lists of nested values would make huge bodies).
    fn list_shape(&mut self, depth: usize) -> (usize, usize) {
        if self.below(8) == 0 {
            (self.below(60), 0)
        } else {
            (self.below(4), depth - 1)
        }
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const KEY: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
const NOT_JSON: &str = "The request body is not valid JSON.";
const NOT_OBJECT: &str = "The request body must be a JSON object.";
/// Error messages are at most this many bytes plus [`MESSAGE_BYTES_PER_BODY_BYTE`] per body
/// byte. The longest fixed texts (enum value sets) fit the base several times; the per-byte
/// part covers the worst case known, a list of `{}` tags (3 bytes per item, two "must not be
/// null" violations of about 100 bytes each), which is about 65 bytes per body byte.
const MESSAGE_BASE_BYTES: usize = 1024;
/// See [`MESSAGE_BASE_BYTES`].
const MESSAGE_BYTES_PER_BODY_BYTE: usize = 80;

/// One valid body per operation.
fn valid_bodies() -> Vec<(Operation, String)> {
    let key_only = format!(r#"{{"KeyId":"{KEY}"}}"#);
    let arn = format!("arn:aws:kms:eu-west-1:111122223333:key/{KEY}");
    vec![
        (Operation::CreateKey, r#"{"Description":"orders","KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT","Tags":[{"TagKey":"team","TagValue":"payments"}]}"#.into()),
        (Operation::UpdateKeyDescription, format!(r#"{{"KeyId":"{KEY}","Description":"dé"}}"#)),
        (Operation::EnableKey, key_only.clone()),
        (Operation::DisableKey, format!(r#"{{"KeyId":"{arn}"}}"#)),
        (Operation::ScheduleKeyDeletion, format!(r#"{{"KeyId":"{KEY}","PendingWindowInDays":7}}"#)),
        (Operation::CancelKeyDeletion, key_only.clone()),
        (Operation::EnableKeyRotation, format!(r#"{{"KeyId":"{KEY}","RotationPeriodInDays":365}}"#)),
        (Operation::DisableKeyRotation, key_only.clone()),
        (Operation::RotateKeyOnDemand, key_only.clone()),
        (
            Operation::GetParametersForImport,
            format!(r#"{{"KeyId":"{KEY}","WrappingAlgorithm":"RSAES_OAEP_SHA_256","WrappingKeySpec":"RSA_2048"}}"#),
        ),
        (
            Operation::ImportKeyMaterial,
            format!(
                r#"{{"KeyId":"{KEY}","ImportToken":"AQ==","EncryptedKeyMaterial":"AQ==","ExpirationModel":"KEY_MATERIAL_DOES_NOT_EXPIRE"}}"#
            ),
        ),
        (Operation::DeleteImportedKeyMaterial, key_only.clone()),
        (Operation::TagResource, format!(r#"{{"KeyId":"{KEY}","Tags":[{{"TagKey":"a","TagValue":"b"}},{{"TagKey":"c","TagValue":""}}]}}"#)),
        (Operation::UntagResource, format!(r#"{{"KeyId":"{KEY}","TagKeys":["a","c"]}}"#)),
        (Operation::CreateAlias, format!(r#"{{"AliasName":"alias/orders","TargetKeyId":"{KEY}"}}"#)),
        (Operation::UpdateAlias, format!(r#"{{"AliasName":"alias/orders","TargetKeyId":"{arn}"}}"#)),
        (Operation::DeleteAlias, r#"{"AliasName":"alias/orders"}"#.into()),
        (Operation::DescribeKey, r#"{"KeyId":"alias/orders","GrantTokens":["token"]}"#.into()),
        (Operation::ListKeys, r#"{"Limit":10,"Marker":"m"}"#.into()),
        (Operation::ListAliases, format!(r#"{{"KeyId":"{KEY}","Limit":10}}"#)),
        (Operation::GetKeyRotationStatus, key_only.clone()),
        (Operation::ListKeyRotations, format!(r#"{{"KeyId":"{KEY}","IncludeKeyMaterial":"ALL_KEY_MATERIAL","Limit":5}}"#)),
        (Operation::ListResourceTags, format!(r#"{{"KeyId":"{KEY}","Limit":5}}"#)),
        (Operation::Encrypt, format!(r#"{{"KeyId":"{KEY}","Plaintext":"aGVsbG8gd29ybGQ=","EncryptionContext":{{"purpose":"test"}},"EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#)),
        (Operation::Decrypt, format!(r#"{{"CiphertextBlob":"S0wBAAAA","EncryptionContext":{{"a":"b"}},"KeyId":"{KEY}"}}"#)),
        (Operation::ReEncrypt, format!(r#"{{"CiphertextBlob":"S0wB","DestinationKeyId":"{KEY}","SourceEncryptionContext":{{}},"DestinationEncryptionContext":{{"x":"y"}}}}"#)),
        (Operation::GenerateDataKey, format!(r#"{{"KeyId":"{KEY}","KeySpec":"AES_256","EncryptionContext":{{"a":"b"}}}}"#)),
        (Operation::GenerateDataKeyWithoutPlaintext, format!(r#"{{"KeyId":"{KEY}","NumberOfBytes":32}}"#)),
        (Operation::GenerateRandom, r#"{"NumberOfBytes":32}"#.into()),
        (Operation::PutKeyPolicy, format!(r#"{{"KeyId":"{KEY}","PolicyName":"default","Policy":"{{}}","BypassPolicyLockoutSafetyCheck":false}}"#)),
        (Operation::GetKeyPolicy, format!(r#"{{"KeyId":"{KEY}","PolicyName":"default"}}"#)),
        (Operation::ListKeyPolicies, format!(r#"{{"KeyId":"{KEY}","Limit":5}}"#)),
        (Operation::CreateGrant, format!(r#"{{"KeyId":"{KEY}","GranteePrincipal":"arn:aws:iam::111122223333:user/app","Operations":["Decrypt","Encrypt"],"Constraints":{{"EncryptionContextSubset":{{"a":"b"}}}},"Name":"n-1"}}"#)),
        (Operation::ListGrants, format!(r#"{{"KeyId":"{KEY}","Limit":5,"GrantId":"GID"}}"#)),
        (Operation::ListRetirableGrants, r#"{"RetiringPrincipal":"arn:aws:iam::111122223333:root","Limit":5}"#.into()),
        (Operation::RetireGrant, format!(r#"{{"KeyId":"{KEY}","GrantId":"GID"}}"#)),
        (Operation::RevokeGrant, format!(r#"{{"KeyId":"{KEY}","GrantId":"GID","DryRun":true}}"#)),
    ]
    .into_iter()
    .map(|(op, b)| (op, b.replace("GID", "abababababababababababababababababababababababababababababababab")))
    .collect()
}

/// Every member name some operation reads, plus a few unknown ones.
const MEMBERS: [&str; 44] = [
    "KeyId",
    "Description",
    "KeyUsage",
    "KeySpec",
    "CustomerMasterKeySpec",
    "Origin",
    "Policy",
    "CustomKeyStoreId",
    "BypassPolicyLockoutSafetyCheck",
    "Tags",
    "MultiRegion",
    "XksKeyId",
    "PendingWindowInDays",
    "RotationPeriodInDays",
    "TagKeys",
    "AliasName",
    "TargetKeyId",
    "GrantTokens",
    "Limit",
    "Marker",
    "IncludeKeyMaterial",
    "Plaintext",
    "EncryptionContext",
    "EncryptionAlgorithm",
    "DryRun",
    "CiphertextBlob",
    "DryRunModifiers",
    "Recipient",
    "SourceEncryptionContext",
    "SourceKeyId",
    "DestinationKeyId",
    "DestinationEncryptionContext",
    "SourceEncryptionAlgorithm",
    "DestinationEncryptionAlgorithm",
    "NumberOfBytes",
    "TagKey",
    "TagValue",
    "keyId",
    "plaintext",
    "Unknown",
    "",
    "KeyId\u{0}",
    "Kéy",
    "__type",
];

/// Strings that sit on validation edges: empty, enum values, aliases, ARNs, base64 with and
/// without padding or with non-canonical trailing bits, non-Latin-1 characters.
const STRINGS: [&str; 24] = [
    "",
    "a",
    KEY,
    "alias/orders",
    "alias/aws/x",
    "alias/",
    "alias/a:b",
    "arn:aws:kms:eu-west-1:111122223333:key/x",
    "SYMMETRIC_DEFAULT",
    "RSA_2048",
    "ENCRYPT_DECRYPT",
    "AWS_KMS",
    "EXTERNAL",
    "AES_256",
    "IGNORE_CIPHERTEXT",
    "ALL_KEY_MATERIAL",
    "aGVsbG8=",
    "aGVsbG8",
    "aGVsbG9=",
    "AA==",
    "////",
    "\u{0100}",
    "€",
    "aws:tag",
];

fn random_string(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => "x".repeat(rng.pick(&[127, 128, 129, 256, 257, 2048, 2049, 8193]).to_owned()),
        1 => "A".repeat(4 * rng.below(1100)), // base64 up to ~3300 bytes
        2 => "aGVsbG8".repeat(1 + rng.below(3)),
        _ => (*rng.pick(&STRINGS)).to_owned(),
    }
}

/// A random JSON value (depth-limited), serialised.
fn random_value(rng: &mut Rng, depth: usize) -> String {
    let json_str = |s: &str| serde_json::to_string(s).unwrap();
    match rng.below(if depth == 0 { 5 } else { 8 }) {
        0 => "null".into(),
        1 => rng.pick(&["true", "false"]).to_string(),
        2 => rng
            .pick(&[
                "0",
                "1",
                "-1",
                "7",
                "30",
                "31",
                "89",
                "365",
                "1024",
                "1025",
                "2560",
                "1.5",
                "1e3",
                "9223372036854775808",
                "-9223372036854775809",
            ])
            .to_string(),
        3 | 4 => json_str(&random_string(rng)),
        5 => {
            let (n, item_depth) = rng.list_shape(depth);
            let items: Vec<String> = (0..n).map(|_| random_value(rng, item_depth)).collect();
            format!("[{}]", items.join(","))
        }
        6 => {
            // A list of tag-like objects.
            let (n, item_depth) = rng.list_shape(depth);
            let items: Vec<String> =
                (0..n).map(|_| random_object(rng, item_depth, &["TagKey", "TagValue", "Other"])).collect();
            format!("[{}]", items.join(","))
        }
        _ => random_object(rng, depth - 1, &["a", "b", "aws:x", "", "purpose"]),
    }
}

fn random_object(rng: &mut Rng, depth: usize, names: &[&str]) -> String {
    let n = rng.below(5);
    let members: Vec<String> = (0..n)
        .map(|_| format!("{}:{}", serde_json::to_string(rng.pick(names)).unwrap(), random_value(rng, depth)))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Applies one random byte-level mutation to `bytes`.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    let len = bytes.len();
    match rng.below(7) {
        0 if len > 0 => {
            let bit = rng.below(len * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        1 if len > 0 => {
            let at = rng.below(len);
            bytes[at] = *rng.pick(b"{}[]\",:\\0-e.tn \xC3\xFF");
        }
        2 => bytes.truncate(rng.below(len + 1)),
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let insert = rng.bytes(n);
            bytes.splice(at..at, insert);
        }
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(8));
            bytes.drain(at..at + n);
        }
        5 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            let copy = bytes[at..at + n].to_vec();
            let to = rng.below(len + 1);
            bytes.splice(to..to, copy);
        }
        _ => bytes.push(rng.byte()),
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Replaces every base64 symbol of `s` by another one: `v ^ 0x3F`, except the last symbol,
/// `v ^ 0x30`, which keeps its low four bits (the trailing bits a canonical decoder checks).
/// Padding, foreign characters and length stay, so the result decodes if and only if `s`
/// does, to as many bytes.
fn scramble_base64(s: &str) -> String {
    let value = |c: char| BASE64.iter().position(|&a| char::from(a) == c);
    let last = s.char_indices().rev().find(|&(_, c)| value(c).is_some()).map(|(i, _)| i);
    s.char_indices()
        .map(|(i, c)| match value(c) {
            Some(v) if Some(i) == last => char::from(BASE64[v ^ 0x30]),
            Some(v) => char::from(BASE64[v ^ 0x3F]),
            None => c,
        })
        .collect()
}

fn outcome(r: &Result<Request, KmsError>) -> Result<Operation, (ErrorKind, String)> {
    match r {
        Ok(req) => Ok(req.operation()),
        Err(e) => Err((e.kind, e.message.clone())),
    }
}

/// Parses `body` as `op` and checks every property; returns whether it was accepted.
fn check(op: Operation, body: &[u8]) -> bool {
    let show = || format!("{op} {:?}", String::from_utf8_lossy(body));
    let result = std::panic::catch_unwind(|| parse_request(op, body))
        .unwrap_or_else(|_| panic!("parse_request panicked on {}", show()));

    let blank = body.iter().all(u8::is_ascii_whitespace);
    let json = serde_json::from_slice::<Value>(body);
    match &result {
        Ok(req) => {
            assert_eq!(req.operation(), op);
            assert!(blank || matches!(json, Ok(Value::Object(_))), "accepted a non-object: {}", show());
            if let Request::Encrypt(r) = req {
                assert!((1..=4096).contains(&r.plaintext.len()));
            }
        }
        Err(e) => {
            let bound = MESSAGE_BASE_BYTES + MESSAGE_BYTES_PER_BODY_BYTE * body.len();
            assert!(e.message.len() <= bound, "{}-byte message for {}", e.message.len(), show());
            if std::str::from_utf8(body).is_err() {
                assert_eq!((e.kind, e.message.as_str()), (ErrorKind::Serialization, NOT_JSON), "{}", show());
            }
        }
    }
    if !blank {
        match &json {
            Err(_) => assert_eq!(outcome(&result), Err((ErrorKind::Serialization, NOT_JSON.into())), "{}", show()),
            Ok(Value::Object(_)) => {}
            Ok(_) => assert_eq!(outcome(&result), Err((ErrorKind::Serialization, NOT_OBJECT.into())), "{}", show()),
        }
    }
    if let Ok(Value::Object(map)) = &json {
        if let Some(Value::String(plaintext)) = map.get("Plaintext") {
            let original = serde_json::to_vec(map).unwrap();
            let mut other = map.clone();
            other.insert("Plaintext".into(), Value::String(scramble_base64(plaintext)));
            let other = serde_json::to_vec(&other).unwrap();
            assert_eq!(
                outcome(&parse_request(op, &original)),
                outcome(&parse_request(op, &other)),
                "the outcome depends on the Plaintext's content: {}",
                show()
            );
        }
    }
    result.is_ok()
}

#[test]
fn every_operation_has_a_valid_sample_body() {
    let bodies = valid_bodies();
    for op in Operation::all() {
        let (_, body) = bodies.iter().find(|(o, _)| *o == op).unwrap_or_else(|| panic!("no sample for {op}"));
        assert!(check(op, body.as_bytes()), "the sample of {op} must parse: {body}");
    }
}

#[test]
fn mutated_valid_bodies_never_panic_and_fail_with_bounded_messages() {
    let bodies = valid_bodies();
    let ops: Vec<Operation> = Operation::all().collect();
    let mut rng = Rng::new(0x6b6d_736d_7574_6174);
    let mut accepted_mutants = 0;
    for _ in 0..30_000 {
        let (op, body) = rng.pick(&bodies);
        let mut bytes = body.clone().into_bytes();
        for _ in 0..1 + rng.below(3) {
            mutate(&mut rng, &mut bytes);
        }
        // Now and then, parse the mutant as another operation.
        let op = if rng.below(8) == 0 { *rng.pick(&ops) } else { *op };
        if check(op, &bytes) && bytes != body.as_bytes() {
            accepted_mutants += 1;
        }
    }
    assert!(accepted_mutants > 100, "only {accepted_mutants} mutants parsed");
}

#[test]
fn random_json_objects_never_panic_and_fail_with_bounded_messages() {
    let ops: Vec<Operation> = Operation::all().collect();
    let mut rng = Rng::new(0x6a73_6f6e_6f62_6a73);
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    let valid = valid_bodies();
    for i in 0..20_000 {
        let op = *rng.pick(&ops);
        let body = if i % 2 == 0 {
            random_object(&mut rng, 3, &MEMBERS)
        } else {
            // A valid body of the operation with one or two random members added (or replacing
            // one of its own: JSON objects keep the last of duplicate names).
            let (_, base) = valid.iter().find(|(o, _)| *o == op).unwrap();
            let mut body = base.trim_end_matches('}').to_owned();
            for _ in 0..1 + rng.below(2) {
                let member = serde_json::to_string(rng.pick(&MEMBERS)).unwrap();
                let value = random_value(&mut rng, 2);
                body.push_str(&format!(",{member}:{value}"));
            }
            body + "}"
        };
        let kind = match parse_request(op, body.as_bytes()) {
            Ok(_) => "ok",
            Err(e) => e.kind.aws_name(),
        };
        *outcomes.entry(kind).or_default() += 1;
        check(op, body.as_bytes());
    }
    // The generator reaches every stage: type errors, model violations, semantic and
    // unsupported-value errors, and success.
    for kind in ["ok", "SerializationException", "ValidationException", "UnsupportedOperationException"] {
        assert!(outcomes.get(kind).copied().unwrap_or(0) > 20, "{kind} reached too rarely: {outcomes:?}");
    }
}

#[test]
fn random_bytes_never_panic_and_get_the_fixed_serialization_message() {
    let ops: Vec<Operation> = Operation::all().collect();
    let mut rng = Rng::new(0x6279_7465_7362_7974);
    for i in 0..20_000 {
        let op = *rng.pick(&ops);
        let len = rng.below(64);
        let mut body = rng.bytes(len);
        if i % 2 == 0 && !body.is_empty() {
            body[0] = b'{';
        }
        check(op, &body);
    }
}

#[test]
fn long_lists_of_short_items_keep_messages_within_the_linear_bound() {
    // The known worst cases for message growth per body byte: every item draws its own
    // violation(s), each quoting its index.
    let n = 2_000;
    let cases = [
        (Operation::TagResource, format!(r#"{{"KeyId":"{KEY}","Tags":[{}]}}"#, vec!["{}"; n].join(","))),
        (Operation::UntagResource, format!(r#"{{"KeyId":"{KEY}","TagKeys":[{}]}}"#, vec!["\"\""; n].join(","))),
        (Operation::DescribeKey, format!(r#"{{"KeyId":"{KEY}","GrantTokens":[{}]}}"#, vec!["\"\""; n].join(","))),
        (Operation::Decrypt, format!(r#"{{"DryRunModifiers":[{}]}}"#, vec!["\"\""; n].join(","))),
    ];
    for (op, body) in cases {
        let Err(e) = parse_request(op, body.as_bytes()) else { panic!("{op} accepted {n} bad items") };
        assert_eq!(e.kind, ErrorKind::Validation);
        check(op, body.as_bytes());
    }
}

#[test]
fn scrambled_plaintext_is_exactly_as_valid_and_as_long() {
    // The Plaintext property above is only as good as this helper: the scrambled text must
    // decode exactly when the original does, to as many bytes, under the request decoder's
    // rules (standard alphabet, padding optional, canonical trailing bits).
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut rng = Rng::new(0x7363_7261_6d62_6c65);
    let symbols: Vec<char> = BASE64.iter().map(|&b| char::from(b)).chain(['=', '=', '-', ' ', 'é']).collect();
    let (mut valid, mut changed) = (0, 0);
    for _ in 0..20_000 {
        let len = rng.below(14);
        let s: String = (0..len)
            .map(|i| if rng.below(20) == 0 || i + 2 < len { *rng.pick(&symbols) } else { *rng.pick(&symbols[..64]) })
            .collect();
        let t = scramble_base64(&s);
        let (a, b) = (engine.decode(&s), engine.decode(&t));
        assert_eq!(a.as_ref().map(Vec::len).ok(), b.as_ref().map(Vec::len).ok(), "{s:?} vs {t:?}");
        valid += usize::from(a.is_ok());
        changed += usize::from(a.is_ok() && a != b);
    }
    assert!(valid > 1_000 && changed > 900, "valid {valid}, changed {changed}");
}
