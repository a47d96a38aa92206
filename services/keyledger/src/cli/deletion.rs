//! `keyledger kms schedule-key-deletion`: the key's use, from the audit index, shown before the
//! deletion is scheduled, and `--require-unused-days D` to refuse a key used in the last D days.
//!
//! The check runs before anything is sent: DescribeKey resolves the key to its ARN, then auditd
//! answers `GET /v1/keys/{arn}/usage` and `GET /healthz` (same location and token as `keyledger
//! audit usage`). The evidence block goes to stderr; stdout keeps the ScheduleKeyDeletion
//! response exactly as before.
//!
//! The index trails the log, so "no use found" only counts once the index is known to cover the
//! moment of the check. The DescribeKey of the check is itself an audit record, stored in the
//! usage stream before its answer; auditd follows each stream in order, so once that record is
//! searchable every use that finished before the check is too — in that stream. Other usage
//! streams (the previous month's) must report no lag. `--require-unused-days` approves only on
//! that footing; without the flag the evidence is advisory and any doubt is a warning.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::audit::{path_segment, AuditApi};
use crate::protocol::KmsClient;

/// Exit code: `--require-unused-days` refused because the key was used within the window.
pub const EXIT_RECENTLY_USED: u8 = 3;
/// Exit code: `--require-unused-days` refused because the evidence could not be established
/// (auditd unreachable or unhealthy, the index behind, the key not described).
pub const EXIT_NO_EVIDENCE: u8 = 4;
/// Largest `--require-unused-days`.
pub const MAX_REQUIRE_UNUSED_DAYS: u32 = 36_500;
/// Longest wait for the audit index to hold the check's own DescribeKey record.
pub const INDEX_CATCH_UP_WAIT: Duration = Duration::from_secs(15);
/// Pause between two looks for that record.
pub const INDEX_POLL_EVERY: Duration = Duration::from_millis(100);
/// Name of the token the check uses from audit-tokens.json (as `keyledger audit` does).
pub const AUDIT_TOKEN_NAME: &str = "auditor";

const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;

/// `keyledger kms schedule-key-deletion --help`.
pub const HELP: &str = "\
usage: keyledger kms schedule-key-deletion --key-id KEY [--pending-window-in-days N]
                                           [--require-unused-days D | --no-usage-check]
                                           [--audit-url URL] [--query …] [--output json|text]

Schedules the deletion of a KMS key (AWS ScheduleKeyDeletion; the JSON response goes to stdout
as before). First it prints the key's use from the audit index to stderr: last use (time,
operation, principal), records per operation and per material version, and how current the
index is.

  --key-id KEY                  key id, key ARN, alias name or alias ARN
  --pending-window-in-days N    7-30 (default 30)
  --require-unused-days D       refuse unless the audit index shows no use (successful
                                cryptographic operation) in the last D days (1-36500), by this
                                machine's clock; also refuse when auditd is unreachable or
                                unhealthy, or its index may be missing recent records. Nothing
                                is sent when refused.
  --no-usage-check              skip the lookup (scripts without auditd); not with
                                --require-unused-days
  --audit-url URL               audit API (default: $KEYLEDGER_AUDIT_URL, else the URL in
                                audit-tokens.json)

The token is $KEYLEDGER_AUDIT_TOKEN, else the auditor token in audit-tokens.json, read from
$KEYLEDGER_DATA_DIR if set, else from the client profile's directory (where `keyledger dev`
writes both). Without --require-unused-days an unreachable auditd is a warning.

Exit codes: 0 scheduled; 3 refused, the key was used within D days; 4 refused, no trustworthy
evidence; 252 bad command line; 254 service error.";

/// How much checking the caller asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageCheck {
    /// `--no-usage-check`: send the request as it is.
    Skip,
    /// The default: show the evidence, then schedule whatever it says.
    Advisory,
    /// `--require-unused-days D`: schedule only on evidence of no use in the last D days.
    RequireUnusedDays(u32),
}

/// This module's flags, taken out of the `kms schedule-key-deletion` command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletionFlags {
    /// The check asked for.
    pub check: UsageCheck,
    /// `--audit-url`.
    pub audit_url: Option<String>,
}

/// Splits the arguments of `keyledger kms schedule-key-deletion …` into the AWS command line
/// (for [`super::kms_args::parse`]) and this module's flags.
///
/// # Errors
/// A flag without its value, a repeated flag, a day count out of range, or
/// `--no-usage-check` with `--require-unused-days`.
pub fn take_flags(args: &[String]) -> Result<(Vec<String>, DeletionFlags), String> {
    let mut rest = Vec::with_capacity(args.len());
    let mut days: Option<u32> = None;
    let mut skip = false;
    let mut audit_url: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).filter(|v| !v.starts_with("--"));
        match args[i].as_str() {
            "--require-unused-days" => {
                let raw = value.ok_or("--require-unused-days needs a number of days")?;
                let n =
                    raw.parse::<u32>().ok().filter(|n| (1..=MAX_REQUIRE_UNUSED_DAYS).contains(n)).ok_or_else(|| {
                        format!("--require-unused-days: expected 1 to {MAX_REQUIRE_UNUSED_DAYS}, got '{raw}'")
                    })?;
                if days.replace(n).is_some() {
                    return Err("--require-unused-days given more than once".into());
                }
                i += 2;
            }
            "--audit-url" => {
                let raw = value.ok_or("--audit-url needs a URL")?;
                if audit_url.replace(raw.clone()).is_some() {
                    return Err("--audit-url given more than once".into());
                }
                i += 2;
            }
            "--no-usage-check" => {
                skip = true;
                i += 1;
            }
            _ => {
                rest.push(args[i].clone());
                i += 1;
            }
        }
    }
    let check = match (skip, days) {
        (true, Some(_)) => return Err("--no-usage-check and --require-unused-days exclude each other".into()),
        (true, None) => UsageCheck::Skip,
        (false, Some(d)) => UsageCheck::RequireUnusedDays(d),
        (false, None) => UsageCheck::Advisory,
    };
    Ok((rest, DeletionFlags { check, audit_url }))
}

/// Where the check's own DescribeKey record stands in the index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Coverage {
    /// Searchable: every record stored before it in `stream` is searchable too.
    Reached {
        /// Its usage stream.
        stream: String,
        /// Its stream sequence.
        seq: u64,
        /// When it was decided (RFC 3339).
        time: String,
    },
    /// Not searchable within [`INDEX_CATCH_UP_WAIT`], or not looked for (auditd unhealthy).
    NotReached,
    /// The reply carried no request id to look for.
    Unknown,
}

/// What the audit index says about a key.
#[derive(Clone, Debug)]
pub struct Evidence {
    /// The key's ARN.
    pub key_arn: String,
    /// The usage answer (`GET /v1/keys/{arn}/usage`).
    pub usage: Value,
    /// The health answer (`GET /healthz`, taken after the coverage check).
    pub health: Value,
    /// Coverage of the moment of the check.
    pub coverage: Coverage,
}

/// Why deletion is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Process exit code ([`EXIT_RECENTLY_USED`] or [`EXIT_NO_EVIDENCE`]).
    pub code: u8,
    /// What to tell the caller.
    pub reason: String,
}

impl Refusal {
    fn no_evidence(reason: impl Into<String>) -> Self {
        Self { code: EXIT_NO_EVIDENCE, reason: reason.into() }
    }
}

/// Why the index may be missing recent use, if it may.
pub fn index_doubt(e: &Evidence) -> Option<String> {
    let status = e.health["status"].as_str().unwrap_or("unknown");
    if status != "ok" {
        return Some(format!("auditd reports its index as {status:?}"));
    }
    let barrier_stream = match &e.coverage {
        Coverage::Reached { stream, .. } => stream,
        Coverage::NotReached => {
            return Some(format!(
                "the audit index did not show this check's own request within {} s: it is behind",
                INDEX_CATCH_UP_WAIT.as_secs()
            ))
        }
        Coverage::Unknown => {
            return Some("the service's reply carried no request id, so the index's coverage is unknown".into())
        }
    };
    // Use is recorded in the usage streams; the barrier's own stream is covered up to the check.
    let behind: Vec<String> = e.health["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| {
            let name = s["stream"].as_str().unwrap_or_default();
            name.starts_with(keyledger_events::names::USAGE_STREAM_PREFIX) && name != barrier_stream
        })
        .filter(|s| s["lag"].as_u64() != Some(0))
        .map(|s| format!("{} ({} records)", s["stream"].as_str().unwrap_or("?"), s["lag"]))
        .collect();
    if !behind.is_empty() {
        return Some(format!("the audit index is behind on {}", behind.join(", ")));
    }
    None
}

/// The `--require-unused-days` rule: no successful cryptographic operation at or after
/// `now − days`, on an index that covers the moment of the check.
///
/// # Errors
/// The [`Refusal`], when the key was used in the window or the index may be missing use.
pub fn judge(e: &Evidence, now_unix_us: i64, days: u32) -> Result<(), Refusal> {
    if let Some(doubt) = index_doubt(e) {
        return Err(Refusal::no_evidence(format!("{doubt}; it may be missing recent use")));
    }
    let last = &e.usage["last_used"];
    if last.is_null() {
        return Ok(());
    }
    let Some(used_us) = last["time_unix_us"].as_i64() else {
        return Err(Refusal::no_evidence("the usage answer has no time for the last use"));
    };
    let cutoff = now_unix_us.saturating_sub(i64::from(days).saturating_mul(MICROS_PER_DAY));
    if used_us >= cutoff {
        let ago = describe_age(now_unix_us.saturating_sub(used_us));
        return Err(Refusal {
            code: EXIT_RECENTLY_USED,
            reason: format!(
                "{} was last used {ago} ({}, {} by {}), within --require-unused-days {days}",
                e.key_arn,
                last["time"].as_str().unwrap_or("?"),
                last["operation"].as_str().unwrap_or("?"),
                last["principal_arn"].as_str().unwrap_or("?"),
            ),
        });
    }
    Ok(())
}

/// `3d 4h ago`, `12m 5s ago`; `5s ahead of this machine's clock` for a time after now.
fn describe_age(us: i64) -> String {
    if us < 0 {
        return format!("{} ahead of this machine's clock", span(us.unsigned_abs() / 1_000_000));
    }
    format!("{} ago", span(us.unsigned_abs() / 1_000_000))
}

fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

fn counts(map: &Value, label: impl Fn(&str) -> String) -> String {
    let items: Vec<String> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, n)| format!("{} {}", label(k), n.as_u64().unwrap_or(0)))
        .collect();
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

/// The evidence block (several lines, no trailing newline).
pub fn render(e: &Evidence, now_unix_us: i64, audit_url: &str) -> String {
    let coverage = match &e.coverage {
        Coverage::Reached { time, .. } => format!("covers every record up to this check at {time}"),
        Coverage::NotReached => "has NOT yet indexed this check's own request (may miss recent use)".to_owned(),
        Coverage::Unknown => "coverage of recent records unknown".to_owned(),
    };
    let last = &e.usage["last_used"];
    let last_used = if last.is_null() {
        format!("never used (per the audit index, which {coverage})")
    } else {
        let age = last["time_unix_us"]
            .as_i64()
            .map(|t| format!(" ({})", describe_age(now_unix_us.saturating_sub(t))))
            .unwrap_or_default();
        format!(
            "{}{age}, {} by {}",
            last["time"].as_str().unwrap_or("?"),
            last["operation"].as_str().unwrap_or("?"),
            last["principal_arn"].as_str().unwrap_or("?")
        )
    };
    // auditd samples its lag about once a second: the figure may predate the check.
    let mut index = format!(
        "{}, lag at auditd's last look {} records",
        e.health["status"].as_str().unwrap_or("unknown"),
        e.health["lag"].as_u64().map(|l| l.to_string()).unwrap_or_else(|| "?".into())
    );
    if let Some(secs) = e.health["lag_seconds"].as_f64() {
        index.push_str(&format!(" / {secs:.1} s"));
    }
    if !last.is_null() {
        index.push_str(&format!("; {coverage}"));
    }
    format!(
        "Usage of {} (audit index at {audit_url}):\n  last used:   {last_used}\n  operations:  {}\n  versions:    {}\n  index:       {index}",
        e.key_arn,
        counts(&e.usage["by_operation"], str::to_owned),
        counts(&e.usage["by_material_version"], |v| format!("v{v}")),
    )
}

/// The check's outcome.
pub enum Preflight {
    /// Send the request.
    Proceed,
    /// Do not send it; exit with this code.
    Refuse(u8),
}

fn now_unix_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Where audit-tokens.json is: `$KEYLEDGER_DATA_DIR`, else the profile's directory.
fn data_dir(profile: Option<&Path>) -> PathBuf {
    if let Some(d) = std::env::var_os("KEYLEDGER_DATA_DIR") {
        return PathBuf::from(d);
    }
    let profile = profile.map(Path::to_path_buf).unwrap_or_else(super::default_profile_path);
    profile.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Runs the check for `request` (the ScheduleKeyDeletion request) and prints the evidence.
/// Returns whether to send the request.
pub async fn preflight(
    client: &KmsClient,
    request: &Value,
    flags: &DeletionFlags,
    profile: Option<&Path>,
) -> Preflight {
    let require = match flags.check {
        UsageCheck::Skip => return Preflight::Proceed,
        UsageCheck::Advisory => None,
        UsageCheck::RequireUnusedDays(d) => Some(d),
    };
    let evidence = match gather(client, request, flags, profile).await {
        Ok(e) => e,
        // No such key for this caller: nothing can be deleted, so sending the request is safe
        // and its AWS error (exit 254) is the honest answer.
        Err(e) if e.downcast_ref::<KeyRefused>().is_some() => return Preflight::Proceed,
        Err(e) => {
            return match require {
                Some(_) => refuse(&Refusal::no_evidence(format!("no usage evidence: {e:#}"))),
                None => {
                    eprintln!("warning: no usage evidence ({e:#}); scheduling the deletion anyway");
                    Preflight::Proceed
                }
            };
        }
    };
    let now = now_unix_us();
    eprintln!("{}", render(&evidence.0, now, &evidence.1));
    match require {
        Some(days) => match judge(&evidence.0, now, days) {
            Ok(()) => {
                eprintln!("no use in the last {days} days: scheduling the deletion");
                Preflight::Proceed
            }
            Err(r) => refuse(&r),
        },
        None => {
            if let Some(doubt) = index_doubt(&evidence.0) {
                eprintln!("warning: {doubt}; the evidence may be missing recent use");
            }
            Preflight::Proceed
        }
    }
}

/// DescribeKey answered an error that ScheduleKeyDeletion would answer too (unknown key,
/// malformed ARN, another account's key).
#[derive(Debug)]
struct KeyRefused(String);

impl std::fmt::Display for KeyRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DescribeKey answered {}", self.0)
    }
}

impl std::error::Error for KeyRefused {}

fn refuse(r: &Refusal) -> Preflight {
    eprintln!("refused: {}. The deletion was not scheduled (nothing was sent).", r.reason);
    Preflight::Refuse(r.code)
}

/// DescribeKey, then the index's health, its coverage of the check, and the key's usage.
/// Returns the evidence and the audit API's URL.
async fn gather(
    client: &KmsClient,
    request: &Value,
    flags: &DeletionFlags,
    profile: Option<&Path>,
) -> anyhow::Result<(Evidence, String)> {
    let key_id = request.get("KeyId").cloned().unwrap_or(Value::Null);
    let described = client.call("DescribeKey", &json!({ "KeyId": key_id })).await.map_err(|e| {
        match e.aws_name() {
            // The service would refuse the deletion itself, with the same error: let it answer.
            Some(name @ ("NotFoundException" | "InvalidArnException" | "AccessDeniedException")) => {
                anyhow::Error::new(KeyRefused(name.to_owned()))
            }
            _ => anyhow::anyhow!("DescribeKey failed: {e}"),
        }
    })?;
    let key_arn = described.body["KeyMetadata"]["Arn"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("DescribeKey answered no KeyMetadata.Arn"))?
        .to_owned();
    let url = flags.audit_url.clone().or_else(|| std::env::var("KEYLEDGER_AUDIT_URL").ok());
    let api = AuditApi::locate(&data_dir(profile), url.as_deref(), AUDIT_TOKEN_NAME)?;
    let health = healthz(&api).await?;
    let healthy = matches!(health["status"].as_str(), Some("ok" | "starting"));
    let coverage = match &described.request_id {
        None => Coverage::Unknown,
        Some(_) if !healthy => Coverage::NotReached,
        Some(id) => wait_for_record(&api, id).await?,
    };
    let (code, usage) = api.get(&format!("/v1/keys/{}/usage", path_segment(&key_arn))).await?;
    anyhow::ensure!(code == 200, "the audit API answered HTTP {code} for the key's usage: {usage}");
    // Health again: its lag figures are then no older than the coverage check.
    let health = healthz(&api).await?;
    Ok((Evidence { key_arn, usage, health, coverage }, api.base().to_owned()))
}

async fn healthz(api: &AuditApi) -> anyhow::Result<Value> {
    let (code, health) = api.get("/healthz").await?;
    // 503 carries the status JSON too (failing, stopped).
    anyhow::ensure!(health.get("status").is_some(), "auditd's /healthz answered HTTP {code} without a status");
    Ok(health)
}

/// Polls for the audit record of `request_id` until [`INDEX_CATCH_UP_WAIT`].
async fn wait_for_record(api: &AuditApi, request_id: &str) -> anyhow::Result<Coverage> {
    let deadline = Instant::now() + INDEX_CATCH_UP_WAIT;
    let path = format!("/v1/audit/records/{}", path_segment(request_id));
    loop {
        let (code, record) = api.get(&path).await?;
        match code {
            200 => {
                let stream = record["stream"].as_str().unwrap_or_default().to_owned();
                let seq = record["seq"].as_u64().unwrap_or(0);
                let time = record["time"].as_str().unwrap_or_default().to_owned();
                anyhow::ensure!(!stream.is_empty() && seq > 0, "the audit record of the check has no stream position");
                return Ok(Coverage::Reached { stream, seq, time });
            }
            404 => {}
            other => anyhow::bail!("the audit API answered HTTP {other}: {record}"),
        }
        if Instant::now() >= deadline {
            return Ok(Coverage::NotReached);
        }
        tokio::time::sleep(INDEX_POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    const NOW: i64 = 1_800_000_000_000_000;
    const STREAM: &str = "KL_USAGE_V1_202701";

    fn evidence(last_used_us: Option<i64>) -> Evidence {
        let last_used = match last_used_us {
            Some(t) => json!({"time": "2027-01-15T08:00:00Z", "time_unix_us": t, "operation": "Encrypt",
                              "principal_arn": "arn:aws:iam::111122223333:user/app", "outcome": "ok"}),
            None => Value::Null,
        };
        Evidence {
            key_arn: "arn:aws:kms:us-east-1:111122223333:key/k".into(),
            usage: json!({"last_used": last_used, "by_operation": {"Encrypt": 3, "DescribeKey": 1},
                          "by_material_version": {"1": 3}}),
            health: json!({"status": "ok", "lag": 0, "streams": [
                {"stream": "KL_CONTROL_V1", "lag": 2},
                {"stream": STREAM, "lag": 5},
                {"stream": "KL_USAGE_V1_202612", "lag": 0},
            ]}),
            coverage: Coverage::Reached { stream: STREAM.into(), seq: 9, time: "2027-01-15T09:00:00Z".into() },
        }
    }

    #[test]
    fn flags_are_taken_out_and_the_rest_left_for_the_aws_parser() {
        let (rest, f) = take_flags(&args(&[
            "schedule-key-deletion",
            "--key-id",
            "k",
            "--require-unused-days",
            "30",
            "--pending-window-in-days",
            "7",
            "--audit-url",
            "http://127.0.0.1:1",
        ]))
        .unwrap();
        assert_eq!(rest, args(&["schedule-key-deletion", "--key-id", "k", "--pending-window-in-days", "7"]));
        assert_eq!(f.check, UsageCheck::RequireUnusedDays(30));
        assert_eq!(f.audit_url.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(take_flags(&args(&["schedule-key-deletion"])).unwrap().1.check, UsageCheck::Advisory);
        assert_eq!(take_flags(&args(&["x", "--no-usage-check"])).unwrap().1.check, UsageCheck::Skip);
    }

    #[test]
    fn bad_flags_are_explained() {
        let e = |a: &[&str]| take_flags(&args(a)).unwrap_err();
        assert!(e(&["x", "--no-usage-check", "--require-unused-days", "1"]).contains("exclude each other"));
        assert!(e(&["x", "--require-unused-days"]).contains("needs a number"));
        assert!(e(&["x", "--require-unused-days", "--key-id", "k"]).contains("needs a number"));
        assert!(e(&["x", "--require-unused-days", "0"]).contains("expected 1 to"));
        assert!(e(&["x", "--require-unused-days", "-3"]).contains("expected 1 to"));
        assert!(e(&["x", "--require-unused-days", "1", "--require-unused-days", "2"]).contains("more than once"));
    }

    #[test]
    fn a_use_inside_the_window_is_refused_with_code_3() {
        let r = judge(&evidence(Some(NOW - MICROS_PER_DAY + 1)), NOW, 1).unwrap_err();
        assert_eq!(r.code, EXIT_RECENTLY_USED);
        assert!(r.reason.contains("23h 59m ago") && r.reason.contains("Encrypt by arn:aws:iam"), "{}", r.reason);
        // A last use ahead of this clock is inside every window.
        assert_eq!(judge(&evidence(Some(NOW + 5_000_000)), NOW, 30).unwrap_err().code, EXIT_RECENTLY_USED);
    }

    #[test]
    fn a_use_before_the_window_or_none_is_approved() {
        assert_eq!(judge(&evidence(Some(NOW - MICROS_PER_DAY - 1)), NOW, 1), Ok(()));
        assert_eq!(judge(&evidence(None), NOW, 30), Ok(()));
    }

    #[test]
    fn an_index_that_may_miss_use_is_refused_with_code_4() {
        let mut e = evidence(None);
        e.coverage = Coverage::NotReached;
        assert_eq!(judge(&e, NOW, 1).unwrap_err().code, EXIT_NO_EVIDENCE);
        let mut e = evidence(None);
        e.coverage = Coverage::Unknown;
        assert_eq!(judge(&e, NOW, 1).unwrap_err().code, EXIT_NO_EVIDENCE);
        let mut e = evidence(None);
        e.health["status"] = json!("failing");
        assert!(judge(&e, NOW, 1).unwrap_err().reason.contains("\"failing\""));
        // Another usage stream behind: refused; the control stream behind: not about use.
        let mut e = evidence(None);
        e.health["streams"][2]["lag"] = json!(1);
        let r = judge(&e, NOW, 1).unwrap_err();
        assert_eq!(r.code, EXIT_NO_EVIDENCE);
        assert!(r.reason.contains("KL_USAGE_V1_202612 (1 records)"), "{}", r.reason);
    }

    #[test]
    fn the_evidence_block_names_last_use_counts_versions_and_lag() {
        let text = render(&evidence(Some(NOW - 3_600_000_000)), NOW, "http://127.0.0.1:4280");
        assert!(text.contains("last used:   2027-01-15T08:00:00Z (1h 0m ago), Encrypt by arn:aws:iam"), "{text}");
        assert!(text.contains("operations:  DescribeKey 1, Encrypt 3"), "{text}");
        assert!(text.contains("versions:    v1 3"), "{text}");
        assert!(text.contains("index:       ok, lag at auditd's last look 0 records"), "{text}");
        let text = render(&evidence(None), NOW, "http://127.0.0.1:4280");
        assert!(text.contains("never used (per the audit index, which covers every record up to this check"), "{text}");
    }
}
