//! Per-key usage aggregation over fast fields (no stored document is read per record).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, StrColumn};
use tantivy::{DocId, Score, SegmentOrdinal, SegmentReader};

/// One record, summarised.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsageEvent {
    /// Record id.
    pub record_id: String,
    /// RFC 3339 time.
    pub time: String,
    /// µs since the epoch.
    pub time_unix_us: i64,
    /// Operation.
    pub operation: String,
    /// Principal ARN.
    pub principal_arn: String,
    /// Outcome.
    pub outcome: String,
}

/// One principal that used the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PrincipalUsage {
    /// Principal ARN.
    pub principal_arn: String,
    /// Its newest record on the key, RFC 3339.
    pub last_time: String,
    /// The same, µs since the epoch.
    pub last_time_unix_us: i64,
    /// Its records on the key.
    pub records: u64,
}

/// What the index knows about one key's use (within the reader's scope).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyUsage {
    /// The key id.
    pub key_id: String,
    /// Records naming the key (every outcome, management and crypto).
    pub records: u64,
    /// Newest successful cryptographic operation ([`CRYPTO_OPERATIONS`]) — AWS's "last used".
    pub last_used: Option<UsageEvent>,
    /// Newest record of any kind.
    pub last_activity: Option<UsageEvent>,
    /// Records per operation.
    pub by_operation: BTreeMap<String, u64>,
    /// Records per outcome.
    pub by_outcome: BTreeMap<String, u64>,
    /// Records per material version (records that name one).
    pub by_material_version: BTreeMap<u32, u64>,
    /// The principals with the newest records on the key, newest first.
    pub recent_principals: Vec<PrincipalUsage>,
}

/// Operations that count as use of a key (AWS GetKeyLastUsage counts cryptographic
/// operations).
pub const CRYPTO_OPERATIONS: [&str; 14] = [
    "Encrypt",
    "Decrypt",
    "ReEncrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "Sign",
    "Verify",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
    "Encapsulate",
    "Decapsulate",
];

/// Counts collected over the matching documents.
#[derive(Default, Debug)]
pub(crate) struct Counts {
    pub records: u64,
    pub by_operation: HashMap<String, u64>,
    pub by_outcome: HashMap<String, u64>,
    pub by_material_version: HashMap<u64, u64>,
    /// principal → (newest time µs, records)
    pub principals: HashMap<String, (i64, u64)>,
}

pub(crate) struct CountsCollector;

pub(crate) struct SegmentCounts {
    operation: Option<StrColumn>,
    outcome: Option<StrColumn>,
    principal: Option<StrColumn>,
    version: Option<Column<u64>>,
    time: Option<Column<tantivy::DateTime>>,
    records: u64,
    ops: HashMap<u64, u64>,
    outcomes: HashMap<u64, u64>,
    versions: HashMap<u64, u64>,
    principals: HashMap<u64, (i64, u64)>,
}

impl Collector for CountsCollector {
    type Fruit = Counts;
    type Child = SegmentCounts;

    fn for_segment(&self, _ord: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<SegmentCounts> {
        let ff = reader.fast_fields();
        Ok(SegmentCounts {
            operation: ff.str("operation")?,
            outcome: ff.str("outcome")?,
            principal: ff.str("principal_arn")?,
            version: ff.column_opt::<u64>("material_version")?,
            time: ff.column_opt::<tantivy::DateTime>("time")?,
            records: 0,
            ops: HashMap::new(),
            outcomes: HashMap::new(),
            versions: HashMap::new(),
            principals: HashMap::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Counts>) -> tantivy::Result<Counts> {
        let mut all = Counts::default();
        for f in fruits {
            all.records += f.records;
            for (k, v) in f.by_operation {
                *all.by_operation.entry(k).or_default() += v;
            }
            for (k, v) in f.by_outcome {
                *all.by_outcome.entry(k).or_default() += v;
            }
            for (k, v) in f.by_material_version {
                *all.by_material_version.entry(k).or_default() += v;
            }
            for (k, (t, n)) in f.principals {
                let e = all.principals.entry(k).or_insert((i64::MIN, 0));
                e.0 = e.0.max(t);
                e.1 += n;
            }
        }
        Ok(all)
    }
}

fn first_ord(col: &Option<StrColumn>, doc: DocId) -> Option<u64> {
    col.as_ref().and_then(|c| c.term_ords(doc).next())
}

fn ords_to_strings<V>(col: &Option<StrColumn>, counts: HashMap<u64, V>) -> HashMap<String, V> {
    let mut out = HashMap::with_capacity(counts.len());
    let Some(col) = col else { return out };
    for (ord, v) in counts {
        let mut s = String::new();
        if col.ord_to_str(ord, &mut s).unwrap_or(false) {
            out.insert(s, v);
        }
    }
    out
}

impl SegmentCollector for SegmentCounts {
    type Fruit = Counts;

    fn collect(&mut self, doc: DocId, _score: Score) {
        self.records += 1;
        if let Some(o) = first_ord(&self.operation, doc) {
            *self.ops.entry(o).or_default() += 1;
        }
        if let Some(o) = first_ord(&self.outcome, doc) {
            *self.outcomes.entry(o).or_default() += 1;
        }
        if let Some(v) = self.version.as_ref().and_then(|c| c.first(doc)) {
            *self.versions.entry(v).or_default() += 1;
        }
        if let Some(p) = first_ord(&self.principal, doc) {
            let t = self.time.as_ref().and_then(|c| c.first(doc)).map(|d| d.into_timestamp_micros()).unwrap_or(0);
            let e = self.principals.entry(p).or_insert((i64::MIN, 0));
            e.0 = e.0.max(t);
            e.1 += 1;
        }
    }

    fn harvest(self) -> Counts {
        Counts {
            records: self.records,
            by_operation: ords_to_strings(&self.operation, self.ops),
            by_outcome: ords_to_strings(&self.outcome, self.outcomes),
            by_material_version: self.versions,
            principals: ords_to_strings(&self.principal, self.principals),
        }
    }
}
