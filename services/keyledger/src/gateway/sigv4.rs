//! AWS Signature Version 4 verification (header form, `AWS4-HMAC-SHA256`).
//!
//! Follows the AWS General Reference "Create a signed AWS API request" / "Elements of an AWS
//! API request signature" for non-S3 services, as botocore's `SigV4Auth` implements it:
//!
//! 1. **Canonical request** = `METHOD \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n
//!    SignedHeaders \n hex(SHA-256(body))`, where
//!    * CanonicalURI: the request path with dot segments and empty segments removed, then
//!      URI-encoded once more (so `%` becomes `%25`: non-S3 paths are double-encoded), keeping
//!      `/` and the RFC 3986 unreserved characters; `/` when empty;
//!    * CanonicalQuery: each `name=value` pair percent-decoded and re-encoded (unreserved
//!      characters only), sorted by name then value, joined with `&`;
//!    * CanonicalHeaders: for each signed header name in `SignedHeaders` order,
//!      `name:value\n`, the values of repeated headers joined with `,`, each value trimmed and
//!      with inner runs of whitespace reduced to one space;
//!    * the payload hash is always computed from the received body (a client's
//!      `X-Amz-Content-SHA256`, e.g. `UNSIGNED-PAYLOAD`, is not trusted).
//! 2. **String to sign** = `AWS4-HMAC-SHA256 \n <X-Amz-Date> \n <date>/<region>/<service>/aws4_request
//!    \n hex(SHA-256(canonical request))`.
//! 3. **Signing key** = HMAC chain `HMAC("AWS4" + secret, date)` → region → service →
//!    `"aws4_request"`; signature = hex(HMAC(signing key, string to sign)), compared in
//!    constant time.
//!
//! Checks beyond the signature itself: the request time (`X-Amz-Date`, ISO 8601 basic, UTC)
//! must be within [`MAX_CLOCK_SKEW_SECS`] of now; the credential scope's date must be the
//! request date, its region the service's region, its service `kms`, its terminator
//! `aws4_request`; `host`, `x-amz-date` and (when present) `x-amz-target` must be signed
//! (binding the operation); temporary credentials (`X-Amz-Security-Token`) are not issued here and are
//! refused. The `Date` header form and query-string (presigned) signatures are not supported.
//!
//! Nothing here logs; secrets and signatures never leave this module except as the boolean
//! outcome.

use hmac::{Hmac, Mac};
use keyledger_kms::calendar::{civil_from_days, days_from_civil, days_in_month};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The only algorithm accepted.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Largest accepted difference between the request time and the gateway clock, in seconds
/// (AWS: 5 minutes).
pub const MAX_CLOCK_SKEW_SECS: i64 = 300;
/// Credential scope terminator.
pub const TERMINATOR: &str = "aws4_request";

type HmacSha256 = Hmac<Sha256>;

/// Why a request was not authenticated. `aws_name` and `message` follow what AWS answers;
/// `reason` is a short stable code for the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// AWS error name (`__type`).
    pub aws_name: &'static str,
    /// Message returned to the client (never contains a secret or a signature).
    pub message: String,
    /// Stable reason code: `missing`, `incomplete`, `scope`, `clock_skew`,
    /// `unknown_access_key`, `session_token`, `bad_signature`.
    pub reason: &'static str,
    /// The access key id the request named, when it named one (not secret).
    pub access_key_id: Option<String>,
}

impl Rejection {
    fn new(aws_name: &'static str, reason: &'static str, message: impl Into<String>) -> Self {
        Self { aws_name, message: message.into(), reason, access_key_id: None }
    }
    fn with_key(mut self, akid: &str) -> Self {
        self.access_key_id = Some(akid.to_owned());
        self
    }
}

fn missing() -> Rejection {
    Rejection::new("MissingAuthenticationTokenException", "missing", "Missing Authentication Token")
}
fn incomplete(message: impl Into<String>) -> Rejection {
    Rejection::new("IncompleteSignatureException", "incomplete", message)
}
fn invalid(reason: &'static str, message: impl Into<String>) -> Rejection {
    Rejection::new("InvalidSignatureException", reason, message)
}
fn unrecognized(reason: &'static str) -> Rejection {
    Rejection::new("UnrecognizedClientException", reason, "The security token included in the request is invalid.")
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// Access key id (`Credential=<id>/…`).
    pub access_key_id: String,
    /// Scope date `YYYYMMDD`.
    pub date: String,
    /// Scope region.
    pub region: String,
    /// Scope service.
    pub service: String,
    /// Scope terminator (must be `aws4_request`).
    pub terminator: String,
    /// Lowercase signed header names, in the order given.
    pub signed_headers: Vec<String>,
    /// The signature as sent (64 lowercase hex characters expected).
    pub signature: String,
}

/// Parses `AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
/// SignedHeaders=<a;b;c>, Signature=<hex>` (components in any order, separated by commas and
/// optional spaces).
///
/// # Errors
/// IncompleteSignatureException (`incomplete`) for a missing or malformed component and for
/// another algorithm than [`ALGORITHM`] (AWS answers `Unsupported AWS 'algorithm'` with that
/// name too).
pub fn parse_authorization(value: &str) -> Result<Authorization, Rejection> {
    let value = value.trim();
    let (algorithm, rest) = value.split_once(' ').unwrap_or((value, ""));
    if algorithm != ALGORITHM {
        return Err(incomplete(format!("Unsupported AWS 'algorithm': '{}'", printable(algorithm, 64))));
    }
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "'{}' not a valid key=value pair (missing equal-sign) in Authorization header",
                printable(part, 64)
            )));
        };
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut missing_parts = Vec::new();
    for (name, v) in [("Credential", credential), ("Signature", signature), ("SignedHeaders", signed)] {
        if v.is_none() {
            missing_parts.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    if !missing_parts.is_empty() {
        return Err(incomplete(missing_parts.join(" ")));
    }
    let credential = credential.unwrap_or_default();
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope.iter().any(|s| s.is_empty()) {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region, not '{}'.",
            printable(scope.get(2).copied().unwrap_or(""), 64)
        )));
    }
    let signed_headers: Vec<String> = signed.unwrap_or_default().split(';').map(str::to_ascii_lowercase).collect();
    if signed_headers.iter().any(String::is_empty) {
        return Err(incomplete("SignedHeaders must name at least one header and no empty ones."));
    }
    Ok(Authorization {
        access_key_id: scope[0].to_owned(),
        date: scope[1].to_owned(),
        region: scope[2].to_owned(),
        service: scope[3].to_owned(),
        terminator: scope[4].to_owned(),
        signed_headers,
        signature: signature.unwrap_or_default().to_owned(),
    })
}

/// The parts of an HTTP request that SigV4 covers. Header names must be lowercase; a header
/// that appears several times is listed several times, in arrival order.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// Method, e.g. `POST`.
    pub method: &'a str,
    /// The path as received (still percent-encoded), e.g. `/`.
    pub path: &'a str,
    /// The raw query string without `?` (empty if none).
    pub query: &'a str,
    /// `(lowercase name, value bytes)` for every header.
    pub headers: &'a [(String, Vec<u8>)],
    /// The body bytes.
    pub body: &'a [u8],
}

impl<'a> RequestParts<'a> {
    fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        let headers: &'a [(String, Vec<u8>)] = self.headers;
        headers.iter().filter(move |(n, _)| n == name).map(|(_, v)| v.as_slice())
    }
    fn header_str(&self, name: &str) -> Option<&'a str> {
        self.header_values(name).next().and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// What the service expects of the credential scope.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The service's region, e.g. `us-east-1`.
    pub region: &'a str,
    /// The signing name, `kms`.
    pub service: &'a str,
    /// Now, seconds since the Unix epoch (the gateway's clock).
    pub now_unix_s: i64,
}

/// A request that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key id that signed it.
    pub access_key_id: String,
    /// The request time, seconds since the Unix epoch.
    pub request_unix_s: i64,
}

/// The checks of [`verify`] that need neither the body nor the secret: the `Authorization`
/// header's form, `X-Amz-Date`, the signed header list, the credential scope, the clock skew,
/// the absence of a session token, and that `is_known` knows the access key id. The gateway
/// runs them before it reads a body, so a request that cannot be authenticated holds no
/// buffer (`parts.body` is not read).
///
/// # Errors
/// A [`Rejection`] saying why (see the module docs), as [`verify`] would give it.
pub fn check_headers<F>(parts: &RequestParts<'_>, expect: &Expectations<'_>, is_known: F) -> Result<Verified, Rejection>
where
    F: FnOnce(&str) -> bool,
{
    let (auth, _, request_unix_s) = header_checks(parts, expect)?;
    if !is_known(&auth.access_key_id) {
        return Err(unrecognized("unknown_access_key").with_key(&auth.access_key_id));
    }
    Ok(Verified { access_key_id: auth.access_key_id, request_unix_s })
}

/// Verifies the request's SigV4 signature. `secret_for` returns the secret access key of an
/// access key id (None: unknown key); it is called at most once, after every check that does
/// not need the secret.
///
/// # Errors
/// A [`Rejection`] saying why (see the module docs).
pub fn verify<F>(parts: &RequestParts<'_>, expect: &Expectations<'_>, secret_for: F) -> Result<Verified, Rejection>
where
    F: FnOnce(&str) -> Option<Zeroizing<String>>,
{
    let (auth, amz_date, request_unix_s) = header_checks(parts, expect)?;
    let akid = auth.access_key_id.as_str();
    let reject = |r: Rejection| r.with_key(akid);
    let Some(secret) = secret_for(akid) else {
        return Err(reject(unrecognized("unknown_access_key")));
    };
    let canonical = canonical_request(parts, &auth.signed_headers);
    let scope = format!("{}/{}/{}/{}", auth.date, auth.region, auth.service, auth.terminator);
    let to_sign = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(secret.as_bytes(), &auth.date, &auth.region, &auth.service);
    let expected = signature(&key, &to_sign);
    let mut given = [0u8; 32];
    let well_formed = auth.signature.len() == 64
        && auth.signature.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && hex::decode_to_slice(&auth.signature, &mut given).is_ok();
    if !well_formed || !bool::from(expected.ct_eq(&given)) {
        return Err(reject(invalid(
            "bad_signature",
            "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
        )));
    }
    Ok(Verified { access_key_id: auth.access_key_id, request_unix_s })
}

/// Everything [`verify`] checks before it needs the secret; returns the parsed header, the
/// `X-Amz-Date` value and the request time.
fn header_checks<'p>(
    parts: &RequestParts<'p>,
    expect: &Expectations<'_>,
) -> Result<(Authorization, &'p str, i64), Rejection> {
    let Some(auth_value) = parts.header_values("authorization").next() else {
        return Err(missing());
    };
    if parts.header_values("authorization").count() > 1 {
        return Err(incomplete("Only one Authorization header is allowed."));
    }
    let auth_value =
        std::str::from_utf8(auth_value).map_err(|_| incomplete("The Authorization header is not valid UTF-8."))?;
    let auth = parse_authorization(auth_value)?;
    let akid = auth.access_key_id.as_str();
    let reject = |r: Rejection| r.with_key(akid);

    let Some(amz_date) = parts.header_str("x-amz-date") else {
        return Err(reject(incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. \
             Keyledger accepts only 'X-Amz-Date' (every AWS SDK sends it).",
        )));
    };
    let Some(request_unix_s) = parse_amz_date(amz_date) else {
        return Err(reject(incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'.",
            printable(amz_date, 32)
        ))));
    };
    for required in ["host", "x-amz-date", "x-amz-target"] {
        // The operation is bound whenever the request names one; a request without a target
        // is refused later as UnknownOperationException.
        if required == "x-amz-target" && parts.header_values(required).next().is_none() {
            continue;
        }
        if !auth.signed_headers.iter().any(|h| h == required) {
            let shown = match required {
                "host" => "Host",
                "x-amz-date" => "X-Amz-Date",
                _ => "X-Amz-Target",
            };
            return Err(reject(incomplete(format!("'{shown}' must be a 'SignedHeader' in the AWS Authorization."))));
        }
    }
    for name in &auth.signed_headers {
        if parts.header_values(name).next().is_none() {
            return Err(reject(incomplete(format!(
                "The signed header '{}' is missing from the request.",
                printable(name, 64)
            ))));
        }
    }
    if auth.date != amz_date[..8] {
        return Err(reject(invalid(
            "scope",
            format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{}', from '{}'.",
                printable(&auth.date, 16),
                &amz_date[..8],
                amz_date
            ),
        )));
    }
    if auth.service != expect.service {
        return Err(reject(invalid(
            "scope",
            format!("Credential should be scoped to correct service: '{}'.", expect.service),
        )));
    }
    if auth.region != expect.region {
        return Err(reject(invalid(
            "scope",
            format!("Credential should be scoped to a valid region, not '{}'.", printable(&auth.region, 64)),
        )));
    }
    if auth.terminator != TERMINATOR {
        return Err(reject(invalid(
            "scope",
            format!(
                "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{}'.",
                printable(&auth.terminator, 64)
            ),
        )));
    }
    let now = expect.now_unix_s;
    if request_unix_s < now - MAX_CLOCK_SKEW_SECS {
        return Err(reject(invalid(
            "clock_skew",
            format!(
                "Signature expired: {amz_date} is now earlier than {} ({} - 5 min.)",
                format_amz_date(now - MAX_CLOCK_SKEW_SECS),
                format_amz_date(now)
            ),
        )));
    }
    if request_unix_s > now + MAX_CLOCK_SKEW_SECS {
        return Err(reject(invalid(
            "clock_skew",
            format!(
                "Signature not yet current: {amz_date} is still later than {} ({} + 5 min.)",
                format_amz_date(now + MAX_CLOCK_SKEW_SECS),
                format_amz_date(now)
            ),
        )));
    }
    if parts.header_values("x-amz-security-token").next().is_some() {
        return Err(reject(unrecognized("session_token")));
    }
    Ok((auth, amz_date, request_unix_s))
}

/// The canonical request (bytes: header values need not be UTF-8).
pub fn canonical_request(parts: &RequestParts<'_>, signed_headers: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(parts.method.to_ascii_uppercase().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_uri(parts.path).as_bytes());
    out.push(b'\n');
    out.extend_from_slice(canonical_query(parts.query).as_bytes());
    out.push(b'\n');
    for name in signed_headers {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut first = true;
        for value in parts.header_values(name) {
            if !first {
                out.push(b',');
            }
            first = false;
            trim_all(value, &mut out);
        }
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.join(";").as_bytes());
    out.push(b'\n');
    out.extend_from_slice(hex::encode(Sha256::digest(parts.body)).as_bytes());
    out
}

/// `AWS4-HMAC-SHA256\n<amz date>\n<scope>\n<hex sha256 of the canonical request>`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical_request)))
}

/// The SigV4 signing key (32 bytes, zeroized on drop).
pub fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> Zeroizing<[u8; 32]> {
    let mut seed = Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    seed.extend_from_slice(b"AWS4");
    seed.extend_from_slice(secret);
    let k_date = hmac(&seed, date.as_bytes());
    let k_region = hmac(k_date.as_ref(), region.as_bytes());
    let k_service = hmac(k_region.as_ref(), service.as_bytes());
    hmac(k_service.as_ref(), TERMINATOR.as_bytes())
}

/// `HMAC-SHA256(signing key, string to sign)`, 32 bytes.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> [u8; 32] {
    *hmac(signing_key, string_to_sign.as_bytes())
}

fn hmac(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// Appends `value` trimmed, with inner runs of ASCII whitespace collapsed to one space.
fn trim_all(value: &[u8], out: &mut Vec<u8>) {
    let mut first = true;
    for word in value.split(|b| b.is_ascii_whitespace()).filter(|w| !w.is_empty()) {
        if !first {
            out.push(b' ');
        }
        first = false;
        out.extend_from_slice(word);
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes every byte except the unreserved ones (and `/` when `keep_slash`), with
/// uppercase hex digits.
fn uri_encode(bytes: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if is_unreserved(b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The canonical URI of a non-S3 request (see the module docs).
pub fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for s in path.split('/') {
        match s {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut normalized = String::from("/");
    normalized.push_str(&segments.join("/"));
    if path.ends_with('/') && !segments.is_empty() {
        normalized.push('/');
    }
    uri_encode(normalized.as_bytes(), true)
}

/// The canonical query string (see the module docs).
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(k), false), uri_encode(&percent_decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Parses `YYYYMMDDTHHMMSSZ` (UTC) into seconds since the Unix epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if t.bytes().all(|c| c.is_ascii_digit()) {
            t.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(4..6)?, num(6..8)?, num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
}

/// Formats seconds since the Unix epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(unix_s: i64) -> String {
    let days = unix_s.div_euclid(86_400);
    let secs = unix_s.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

/// A client-supplied value echoed in a message: printable ASCII only, at most `max` bytes.
fn printable(s: &str, max: usize) -> String {
    s.chars().filter(|c| c.is_ascii_graphic() || *c == ' ').take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    /// 2015-08-30T12:36:00Z
    const WHEN: i64 = 1_440_938_160;

    fn headers(list: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        list.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_bytes().to_vec())).collect()
    }

    fn secret_for(id: &str) -> Option<Zeroizing<String>> {
        (id == "AKIDEXAMPLE").then(|| Zeroizing::new(SECRET.to_owned()))
    }

    fn expect(now: i64) -> Expectations<'static> {
        Expectations { region: "us-east-1", service: "kms", now_unix_s: now }
    }

    /// Signed by botocore 1.43's `SigV4Auth` with `botocore.auth.get_current_datetime`
    /// patched to return 2015-08-30T12:36:00Z (an implementation independent of ours).
    fn botocore_kms_request() -> Vec<(String, Vec<u8>)> {
        headers(&[
            ("Host", "kms.us-east-1.amazonaws.com"),
            ("Content-Type", "application/x-amz-json-1.1"),
            ("X-Amz-Target", "TrentService.ListKeys"),
            ("User-Agent", "test"),
            ("X-Amz-Date", "20150830T123600Z"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=dcc231cd373cfe52544b93ec65223a5479dbff61981deb6a7118afb9d1310180"),
        ])
    }

    fn parts<'a>(h: &'a [(String, Vec<u8>)], body: &'a [u8]) -> RequestParts<'a> {
        RequestParts { method: "POST", path: "/", query: "", headers: h, body }
    }

    #[test]
    fn the_aws_documentation_example_signs_as_documented() {
        // AWS General Reference, "Signature Version 4 signing process" example (IAM ListUsers);
        // the signature 5d672d79… is the one the documentation and botocore give.
        let h = headers(&[
            ("Content-Type", "application/x-www-form-urlencoded; charset=utf-8"),
            ("Host", "iam.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ]);
        let p = RequestParts {
            method: "GET",
            path: "/",
            query: "Action=ListUsers&Version=2010-05-08",
            headers: &h,
            body: b"",
        };
        let signed: Vec<String> = ["content-type", "host", "x-amz-date"].map(String::from).to_vec();
        let canonical = canonical_request(&p, &signed);
        assert_eq!(
            hex::encode(Sha256::digest(&canonical)),
            "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
        );
        let key = signing_key(SECRET.as_bytes(), "20150830", "us-east-1", "iam");
        assert_eq!(hex::encode(*key), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
        let sts = string_to_sign("20150830T123600Z", "20150830/us-east-1/iam/aws4_request", &canonical);
        assert_eq!(
            hex::encode(signature(&key, &sts)),
            "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
        );
    }

    #[test]
    fn a_botocore_signed_kms_request_verifies() {
        let h = botocore_kms_request();
        let v = verify(&parts(&h, br#"{"Limit": 5}"#), &expect(WHEN + 10), secret_for).unwrap();
        assert_eq!(v, Verified { access_key_id: "AKIDEXAMPLE".into(), request_unix_s: WHEN });
    }

    #[test]
    fn paths_queries_and_header_whitespace_are_canonicalised_like_botocore() {
        let h = headers(&[
            ("Host", "127.0.0.1:4599"),
            ("X-Amz-Target", "TrentService.ListKeys"),
            ("X-Custom", "  a   b  "),
            ("X-Amz-Date", "20150830T123600Z"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/eu-west-3/kms/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target;x-custom, Signature=d67e96df8be962dce79b51f005bb5a5973b46a9c8464adef54b986c889b7018d"),
        ]);
        let p = RequestParts {
            method: "POST",
            path: "/a%20b/./c/../d/",
            query: "z=1&a=b&a=%2F&c",
            headers: &h,
            body: b"{}",
        };
        let e = Expectations { region: "eu-west-3", service: "kms", now_unix_s: WHEN };
        verify(&p, &e, secret_for).unwrap();
        assert_eq!(canonical_uri("/a%20b/./c/../d/"), "/a%2520b/d/");
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_query("z=1&a=b&a=%2F&c"), "a=%2F&a=b&c=&z=1");
    }

    #[test]
    fn any_change_to_a_signed_part_breaks_the_signature() {
        let base = botocore_kms_request();
        let body = br#"{"Limit": 5}"#;
        let bad =
            |h: &[(String, Vec<u8>)], body: &[u8]| verify(&parts(h, body), &expect(WHEN), secret_for).unwrap_err();
        assert_eq!(bad(&base, br#"{"Limit": 6}"#).reason, "bad_signature");
        let mut target = base.clone();
        target[2].1 = b"TrentService.ScheduleKeyDeletion".to_vec();
        assert_eq!(bad(&target, body).reason, "bad_signature");
        let mut host = base.clone();
        host[0].1 = b"evil.example".to_vec();
        assert_eq!(bad(&host, body).reason, "bad_signature");
        let r = verify(&parts(&base, body), &expect(WHEN), |_| Some(Zeroizing::new("wrong secret".to_owned())))
            .unwrap_err();
        assert_eq!(r.aws_name, "InvalidSignatureException");
        assert_eq!(r.access_key_id.as_deref(), Some("AKIDEXAMPLE"));
        assert!(!r.message.contains("dcc231cd"), "the signature is never echoed");
    }

    #[test]
    fn requests_outside_five_minutes_are_refused_as_expired_or_not_yet_current() {
        let h = botocore_kms_request();
        let body = br#"{"Limit": 5}"#;
        verify(&parts(&h, body), &expect(WHEN + 300), secret_for).unwrap();
        verify(&parts(&h, body), &expect(WHEN - 300), secret_for).unwrap();
        let late = verify(&parts(&h, body), &expect(WHEN + 301), secret_for).unwrap_err();
        assert_eq!((late.aws_name, late.reason), ("InvalidSignatureException", "clock_skew"));
        assert_eq!(
            late.message,
            "Signature expired: 20150830T123600Z is now earlier than 20150830T123601Z (20150830T124101Z - 5 min.)"
        );
        let early = verify(&parts(&h, body), &expect(WHEN - 301), secret_for).unwrap_err();
        assert!(
            early.message.starts_with("Signature not yet current: 20150830T123600Z is still later than"),
            "{}",
            early.message
        );
    }

    #[test]
    fn unsigned_unknown_and_temporary_credentials_are_told_apart() {
        let body = br#"{"Limit": 5}"#;
        let unsigned = headers(&[("Host", "x"), ("X-Amz-Target", "TrentService.ListKeys")]);
        let r = verify(&parts(&unsigned, body), &expect(WHEN), secret_for).unwrap_err();
        assert_eq!(
            (r.aws_name, r.message.as_str()),
            ("MissingAuthenticationTokenException", "Missing Authentication Token")
        );
        let h = botocore_kms_request();
        let r = verify(&parts(&h, body), &expect(WHEN), |_| None).unwrap_err();
        assert_eq!((r.aws_name, r.reason), ("UnrecognizedClientException", "unknown_access_key"));
        let mut token = h.clone();
        token.push(("x-amz-security-token".into(), b"FQoG".to_vec()));
        let r = verify(&parts(&token, body), &expect(WHEN), secret_for).unwrap_err();
        assert_eq!((r.aws_name, r.reason), ("UnrecognizedClientException", "session_token"));
    }

    #[test]
    fn the_scope_must_name_this_region_and_kms() {
        let h = botocore_kms_request();
        let body = br#"{"Limit": 5}"#;
        let e = Expectations { region: "eu-west-1", service: "kms", now_unix_s: WHEN };
        let r = verify(&parts(&h, body), &e, secret_for).unwrap_err();
        assert_eq!((r.aws_name, r.reason), ("InvalidSignatureException", "scope"));
        assert_eq!(r.message, "Credential should be scoped to a valid region, not 'us-east-1'.");
        let e = Expectations { region: "us-east-1", service: "s3", now_unix_s: WHEN };
        assert_eq!(verify(&parts(&h, body), &e, secret_for).unwrap_err().reason, "scope");
    }

    #[test]
    fn the_operation_header_must_be_signed() {
        let h = headers(&[
            ("Host", "kms.us-east-1.amazonaws.com"),
            ("X-Amz-Target", "TrentService.ListKeys"),
            ("X-Amz-Date", "20150830T123600Z"),
            ("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=00"),
        ]);
        let r = verify(&parts(&h, b"{}"), &expect(WHEN), secret_for).unwrap_err();
        assert_eq!(r.aws_name, "IncompleteSignatureException");
        assert!(r.message.contains("X-Amz-Target"), "{}", r.message);
    }

    #[test]
    fn malformed_authorization_headers_are_incomplete() {
        for value in [
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/kms/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 garbage",
            "AWS4-ECDSA-P256-SHA256 Credential=x",
        ] {
            let e = parse_authorization(value).unwrap_err();
            assert_eq!(e.aws_name, "IncompleteSignatureException", "{value}");
        }
        let ok = parse_authorization(
            "AWS4-HMAC-SHA256 SignedHeaders=Host;X-Amz-Date,Signature=ab, Credential=K/20150830/r/kms/aws4_request",
        )
        .unwrap();
        assert_eq!(ok.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(ok.region, "r");
    }

    #[test]
    fn amz_dates_round_trip_and_reject_nonsense() {
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(WHEN));
        assert_eq!(format_amz_date(WHEN), "20150830T123600Z");
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(format_amz_date(951_782_400), "20000229T000000Z");
        for bad in [
            "20150230T000000Z",
            "20151330T000000Z",
            "2015-08-30T12:36:00Z",
            "20150830T123600",
            "20150830T246000Z",
            "2015083aT123600Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }
}
