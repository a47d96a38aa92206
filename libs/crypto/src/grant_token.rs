//! Grant tokens (AWS `GrantToken`, returned by CreateGrant): an authenticated pointer to a
//! grant and to the log position of the event that created it.
//!
//! A token authorizes nothing by itself. A worker that receives one checks its tag, then waits
//! (bounded, capped at the control stream's head) until its projection holds the grant's event;
//! the grant in the projection is what authorizes the request. This is AWS's "use a grant
//! before it is consistent" (AWS KMS Developer Guide, "Grant tokens") without a second source
//! of truth.
//!
//! Text form: `KLGT1` followed by unpadded base64url of 116 bytes (160 characters in all):
//!
//! ```text
//! offset  size  field
//!      0     1  version (1)
//!      1    12  account, 12 ASCII digits
//!     13    16  KMS key id (UUID bytes)
//!     29    32  grant id
//!     61     8  control stream sequence of the GrantCreated event, big-endian
//!     69    15  reserved, zero
//!     84    32  tag = BLAKE3 keyed_hash(derive_key("keyledger 2026-12-06 grant token v1", root),
//!               "keyledger grant token v1" ‖ bytes 0..84)
//! ```
//!
//! Tokens are not secret (AWS: "non-secret"), but they are never logged either.

use base64::Engine as _;
use subtle::ConstantTimeEq as _;

use crate::{CryptoError, Result};

/// Prefix of every grant token's text form.
pub const GRANT_TOKEN_PREFIX: &str = "KLGT1";
/// Version byte of the token layout above.
pub const GRANT_TOKEN_VERSION: u8 = 1;
/// Bytes of the token before base64url.
pub const GRANT_TOKEN_LEN: usize = 116;
const BODY_LEN: usize = 84;
/// Label that starts the tag's input.
pub const GRANT_TOKEN_LABEL: &[u8] = b"keyledger grant token v1";
/// BLAKE3 `derive_key` context of the tag key.
pub(crate) const CTX_GRANT_TOKEN: &str = "keyledger 2026-12-06 grant token v1";

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a grant token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTokenFields {
    /// The key's account, 12 ASCII digits.
    pub account: String,
    /// The KMS key id (16 bytes).
    pub key_id: [u8; 16],
    /// The grant id (32 bytes).
    pub grant_id: [u8; 32],
    /// Control stream sequence of the GrantCreated event (≥ 1).
    pub log_seq: u64,
}

impl GrantTokenFields {
    fn body(&self) -> Option<[u8; BODY_LEN]> {
        let acct = self.account.as_bytes();
        if acct.len() != 12 || !acct.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut b = [0u8; BODY_LEN];
        b[0] = GRANT_TOKEN_VERSION;
        b[1..13].copy_from_slice(acct);
        b[13..29].copy_from_slice(&self.key_id);
        b[29..61].copy_from_slice(&self.grant_id);
        b[61..69].copy_from_slice(&self.log_seq.to_be_bytes());
        Some(b)
    }
}

fn tag(key: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(GRANT_TOKEN_LABEL);
    h.update(body);
    *h.finalize().as_bytes()
}

/// Makes the text form of a token for `fields` with the tag key `key`.
///
/// Errors: [`CryptoError::InvalidGrantToken`] if the account is not 12 ASCII digits.
pub(crate) fn seal(key: &[u8; 32], fields: &GrantTokenFields) -> Result<String> {
    let body = fields.body().ok_or(CryptoError::InvalidGrantToken)?;
    let mut raw = Vec::with_capacity(GRANT_TOKEN_LEN);
    raw.extend_from_slice(&body);
    raw.extend_from_slice(&tag(key, &body));
    Ok(format!("{GRANT_TOKEN_PREFIX}{}", B64.encode(raw)))
}

/// Checks a token's text form and tag (constant-time compare) and returns its fields.
///
/// Errors: [`CryptoError::InvalidGrantToken`] for anything that is not exactly a token this
/// root key made: wrong prefix, bad base64url, wrong length, version, non-zero reserved bytes,
/// a bad account, sequence 0, or a tag that does not verify.
pub(crate) fn open(key: &[u8; 32], text: &str) -> Result<GrantTokenFields> {
    let bad = || CryptoError::InvalidGrantToken;
    let rest = text.strip_prefix(GRANT_TOKEN_PREFIX).ok_or_else(bad)?;
    let raw = B64.decode(rest).map_err(|_| bad())?;
    if raw.len() != GRANT_TOKEN_LEN || raw[0] != GRANT_TOKEN_VERSION || raw[69..BODY_LEN].iter().any(|b| *b != 0) {
        return Err(bad());
    }
    let (body, t) = raw.split_at(BODY_LEN);
    if !bool::from(tag(key, body).ct_eq(t)) {
        return Err(bad());
    }
    let account = std::str::from_utf8(&body[1..13]).map_err(|_| bad())?.to_owned();
    if !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let log_seq = u64::from_be_bytes(body[61..69].try_into().expect("8 bytes"));
    if log_seq == 0 {
        return Err(bad());
    }
    Ok(GrantTokenFields {
        account,
        key_id: body[13..29].try_into().expect("16 bytes"),
        grant_id: body[29..61].try_into().expect("32 bytes"),
        log_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> GrantTokenFields {
        GrantTokenFields { account: "111122223333".into(), key_id: [7; 16], grant_id: [9; 32], log_seq: 42 }
    }

    #[test]
    fn a_token_round_trips_and_any_change_is_refused() {
        let key = [1u8; 32];
        let t = seal(&key, &fields()).unwrap();
        assert_eq!(t.len(), GRANT_TOKEN_PREFIX.len() + 155);
        assert_eq!(open(&key, &t).unwrap(), fields());
        assert!(open(&[2u8; 32], &t).is_err(), "another root key");
        let raw = B64.decode(&t[5..]).unwrap();
        for i in 0..raw.len() {
            let mut r = raw.clone();
            r[i] ^= 1;
            let forged = format!("{GRANT_TOKEN_PREFIX}{}", B64.encode(&r));
            assert!(open(&key, &forged).is_err(), "bit flip at byte {i} accepted");
        }
        assert!(open(&key, &t[1..]).is_err());
        assert!(open(&key, &format!("{t}A")).is_err());
        assert!(open(&key, "").is_err());
        let mut bad = fields();
        bad.account = "alice".into();
        assert!(seal(&key, &bad).is_err());
    }
}
