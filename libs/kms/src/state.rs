//! The key-state projection: every account's keys (including tombstones of deleted keys) and
//! aliases, and the chain head of every aggregate, folded from the control stream.
//!
//! `Projection::apply` is the only writer. It checks the chain (stream order, aggregate
//! sequence, previous hash) and then folds the body with the pure rules in `evolve`. Two
//! projections that applied the same events have the same [`Projection::state_digest`].

use std::collections::{BTreeMap, BTreeSet};

use keyledger_events::{genesis_hash, AggregateKind, Event, ImportParametersIssuedV1, MaterialRefV1, TagV1};
use serde::{Deserialize, Serialize};

use crate::api::{ExpirationModel, KeySpec, KeyUsage, Origin};
use crate::ids::{KeyId, Realm};

/// One day in milliseconds.
pub const DAY_MS: u64 = 86_400_000;

/// Where an aggregate's chain stands: what the next event must carry, and the stream sequence
/// of its last event (the expected last subject sequence for optimistic concurrency).
///
/// For a never-seen aggregate: `next_aggregate_seq` 0, `last_hash` =
/// [`keyledger_events::genesis_hash`], `last_stream_seq` 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AggregateHead {
    /// The `aggregate_seq` the next event of the aggregate must carry.
    pub next_aggregate_seq: u64,
    /// Hash of the aggregate's last event (its genesis hash before the first); the next
    /// event's `prev_hash`.
    pub last_hash: [u8; 32],
    /// Stream sequence of the aggregate's last event, 0 if none.
    pub last_stream_seq: u64,
}

impl AggregateHead {
    /// The head of an aggregate that has no event yet.
    pub fn genesis(kind: AggregateKind, account: &str, aggregate_id: &str) -> Self {
        Self { next_aggregate_seq: 0, last_hash: genesis_hash(kind, account, aggregate_id), last_stream_seq: 0 }
    }
}

/// AWS `KeyState` values a key can be in here (Creating, Updating and PendingReplicaDeletion
/// belong to multi-Region keys, which do not exist yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyState {
    /// `Enabled`: usable.
    Enabled,
    /// `Disabled`: DisableKey, or CancelKeyDeletion.
    Disabled,
    /// `PendingDeletion`: ScheduleKeyDeletion; deleted when the window ends.
    PendingDeletion,
    /// `PendingImport`: an EXTERNAL key without material.
    PendingImport,
    /// `Unavailable`: a custom-key-store key whose store is disconnected (never reached yet).
    Unavailable,
}

impl KeyState {
    /// The AWS wire text, e.g. `PendingDeletion`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Enabled => "Enabled",
            KeyState::Disabled => "Disabled",
            KeyState::PendingDeletion => "PendingDeletion",
            KeyState::PendingImport => "PendingImport",
            KeyState::Unavailable => "Unavailable",
        }
    }
}

/// How a material version came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MaterialSource {
    /// The key's first material (CreateKey).
    Created,
    /// An automatic rotation (`RotationType` AUTOMATIC).
    Automatic,
    /// RotateKeyOnDemand (`RotationType` ON_DEMAND).
    OnDemand,
    /// ImportKeyMaterial (Origin EXTERNAL).
    Imported,
}

/// Most import parameters (GetParametersForImport responses) a key keeps open at once; a
/// newer one pushes out the oldest, whose token then answers InvalidImportTokenException.
/// Expired ones are dropped as later events apply.
pub const MAX_OPEN_IMPORT_PARAMETERS: usize = 10;

/// The imported-material state of an EXTERNAL key (empty for AWS_KMS keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportState {
    /// Open import parameters, oldest first (at most [`MAX_OPEN_IMPORT_PARAMETERS`]).
    pub parameters: Vec<ImportParametersIssuedV1>,
    /// The material id the key is bound to since its first import; every reimport must carry
    /// the same material (AWS: a KMS key is permanently tied to its material).
    pub bound_material_id: Option<[u8; 32]>,
    /// While material is present: its `ExpirationModel`.
    pub expiration_model: Option<ExpirationModel>,
    /// While material is present and expires: `ValidTo`, ms since the epoch.
    pub valid_to_unix_ms: Option<u64>,
    /// `KeyMaterialDescription` of the last import.
    pub description: String,
    /// When the material present was (last) imported, ms since the epoch.
    pub imported_unix_ms: Option<u64>,
    /// The last material deleted (expired or DeleteImportedKeyMaterial), so an interrupted
    /// erase can be finished: its stored bytes are erased only if they still hash to
    /// `wrapped_digest`.
    pub last_deleted: Option<MaterialRefV1>,
}

impl ImportState {
    /// The open parameters of `token_id`, if any.
    pub fn parameters(&self, token_id: &[u8; 16]) -> Option<&ImportParametersIssuedV1> {
        self.parameters.iter().find(|p| &p.token_id == token_id)
    }
}

/// One version of a key's material: the event's commitment plus when and how it appeared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialVersion {
    /// The commitment from the event (version, material id, root key id, wrapped digest).
    pub material: MaterialRefV1,
    /// When the event that introduced it was written (writer clock, ms since the epoch); the
    /// `RotationDate` of a rotation.
    pub created_unix_ms: u64,
    /// Creation or rotation type.
    pub source: MaterialSource,
}

/// Automatic rotation setting of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AutoRotation {
    /// Not enabled.
    Off,
    /// Enabled with a period; the next rotation comes due at `next_rotation_unix_ms`.
    On {
        /// `RotationPeriodInDays`, 90..2560.
        period_days: u16,
        /// When the next automatic rotation is due, ms since the epoch.
        next_rotation_unix_ms: u64,
    },
}

/// A scheduled deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deletion {
    /// `DeletionDate`, ms since the epoch.
    pub deletion_unix_ms: u64,
    /// `PendingWindowInDays`, 7..30.
    pub window_days: u16,
}

/// A live (not deleted) key. Read-only for everyone but `evolve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// Key id.
    pub id: KeyId,
    /// Owning account (12 digits).
    pub account: String,
    /// `CreationDate`, ms since the epoch (writer clock of KeyCreated).
    pub created_unix_ms: u64,
    /// `Description`.
    pub description: String,
    /// `KeySpec`.
    pub key_spec: KeySpec,
    /// `KeyUsage`.
    pub key_usage: KeyUsage,
    /// `Origin`.
    pub origin: Origin,
    /// `MultiRegion` (always false so far).
    pub multi_region: bool,
    /// `KeyState`.
    pub state: KeyState,
    /// Set exactly while `state` is PendingDeletion.
    pub deletion: Option<Deletion>,
    /// Tags in insertion order; TagResource upserts in place.
    pub tags: Vec<TagV1>,
    /// The automatic rotation setting. It is kept while PendingDeletion (status then reads
    /// false, see [`Key::rotation_status_enabled`]) and so returns on cancel.
    pub rotation: AutoRotation,
    /// Every material version ever, ascending by version.
    pub materials: Vec<MaterialVersion>,
    /// The current material version (0 = none, e.g. PendingImport).
    pub current_version: u32,
    /// Completed on-demand rotations (RotateKeyOnDemand), for the per-key quota.
    pub on_demand_rotations: u32,
    /// Names of the aliases pointing at this key, in creation order.
    pub aliases: Vec<String>,
    /// Imported material (Origin EXTERNAL keys only; boxed so AWS_KMS keys pay 8 bytes).
    pub(crate) import: Option<Box<ImportState>>,
    /// The key policy (8 bytes for the default policy).
    pub policy: crate::access::PolicySlot,
    /// Live grants, in creation order.
    pub grants: Vec<crate::access::Grant>,
}

/// What [`Key::import`] returns for keys without imported-material state.
static NO_IMPORT: ImportState = ImportState {
    parameters: Vec::new(),
    bound_material_id: None,
    expiration_model: None,
    valid_to_unix_ms: None,
    description: String::new(),
    imported_unix_ms: None,
    last_deleted: None,
};

impl Key {
    /// The imported-material state (empty for AWS_KMS keys and EXTERNAL keys never imported
    /// into).
    pub fn import(&self) -> &ImportState {
        self.import.as_deref().unwrap_or(&NO_IMPORT)
    }

    pub(crate) fn import_mut(&mut self) -> &mut ImportState {
        self.import.get_or_insert_with(Default::default)
    }

    /// The key ARN in `realm`.
    pub fn arn(&self, realm: &Realm) -> String {
        realm.key_arn(&self.account, &self.id)
    }

    /// The current material, if any.
    pub fn current_material(&self) -> Option<&MaterialRefV1> {
        self.material(self.current_version)
    }

    /// The material of `version`, if the key has it.
    pub fn material(&self, version: u32) -> Option<&MaterialRefV1> {
        if version == 0 {
            return None;
        }
        self.materials.iter().find(|m| m.material.version == version).map(|m| &m.material)
    }

    /// The version the next material of this key must have.
    pub fn next_material_version(&self) -> u32 {
        self.materials.last().map_or(1, |m| m.material.version + 1)
    }

    /// `KeyRotationEnabled` as GetKeyRotationStatus reports it: false while PendingDeletion.
    pub fn rotation_status_enabled(&self) -> bool {
        matches!(self.rotation, AutoRotation::On { .. }) && self.state != KeyState::PendingDeletion
    }

    /// Whether the key's imported material has reached its `ValidTo` at `now_unix_ms` (the
    /// workers' own check, before the expiry event is in the log).
    pub fn material_expired_at(&self, now_unix_ms: u64) -> bool {
        self.current_version != 0 && self.import().valid_to_unix_ms.is_some_and(|t| t <= now_unix_ms)
    }

    /// The time-driven action this key waits for next, if any (the earliest when several).
    fn due(&self) -> Option<(u64, DueKind)> {
        let lifecycle = match (self.state, self.rotation, self.deletion) {
            (KeyState::Enabled, AutoRotation::On { next_rotation_unix_ms, .. }, _) => {
                Some((next_rotation_unix_ms, DueKind::Rotation))
            }
            (KeyState::PendingDeletion, _, Some(d)) => Some((d.deletion_unix_ms, DueKind::Deletion)),
            _ => None,
        };
        let expiry = match self.import().valid_to_unix_ms {
            Some(t) if self.current_version != 0 => Some((t, DueKind::MaterialExpiry)),
            _ => None,
        };
        match (lifecycle, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What a key aggregate holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum KeyEntry {
    /// Events exist but none created the key (all ignored).
    Absent,
    /// The key.
    Live(Box<Key>),
    /// Deleted: only the tombstone remains (material refs dropped).
    Deleted {
        /// Server time of the KeyDeleted event that took effect.
        deleted_unix_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeySlot {
    pub head: AggregateHead,
    pub entry: KeyEntry,
}

/// A live alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    /// The key it points to (same account).
    pub target: KeyId,
    /// `CreationDate`, ms since the epoch.
    pub created_unix_ms: u64,
    /// `LastUpdatedDate`, ms since the epoch.
    pub updated_unix_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AliasSlot {
    pub head: AggregateHead,
    /// `None` when deleted (or never effectively created); the head stays.
    pub alias: Option<Alias>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AccountState {
    pub keys: BTreeMap<KeyId, KeySlot>,
    pub aliases: BTreeMap<String, AliasSlot>,
    /// Derived: number of `KeyEntry::Live` keys (any state; the key quota counts them).
    #[serde(skip)]
    pub live_keys: usize,
}

/// Kind of a time-driven action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DueKind {
    /// A PendingDeletion key's DeletionDate.
    Deletion,
    /// An Enabled key's next automatic rotation.
    Rotation,
    /// The `ValidTo` of a key's imported material.
    MaterialExpiry,
}

/// Why an event could not be applied. The projection is unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// Stream sequences must increase.
    #[error("stream sequence {got} is not after the last applied {last}")]
    StreamSeqNotIncreasing {
        /// Last applied stream sequence.
        last: u64,
        /// The one offered.
        got: u64,
    },
    /// The event does not extend its aggregate's chain (a skipped, repeated or forked event).
    #[error(
        "chain broken for {kind:?} {account}/{aggregate_id}: expected seq {expected_seq} after \
         {expected_prev_hash}, got seq {got_seq} after {got_prev_hash}"
    )]
    ChainBroken {
        /// Aggregate kind.
        kind: AggregateKind,
        /// Account.
        account: String,
        /// Aggregate id.
        aggregate_id: String,
        /// The sequence the head expects.
        expected_seq: u64,
        /// The sequence the event carries.
        got_seq: u64,
        /// Hex of the hash the head expects as `prev_hash`.
        expected_prev_hash: String,
        /// Hex of the event's `prev_hash`.
        got_prev_hash: String,
    },
    /// A body on the wrong aggregate kind, a malformed aggregate id, or a kind this
    /// projection does not hold.
    #[error("event does not fit its aggregate: {0}")]
    Malformed(String),
    /// A code (key spec, usage, origin, rotation type) this build does not understand.
    #[error("event uses an unknown {0} code {1}")]
    UnknownCode(&'static str, u16),
}

/// What [`Projection::apply`] did with an event that extended its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The body changed the state.
    Folded,
    /// Recorded in the chain head only: the body did not apply to the current state (e.g. a
    /// KeyDeleted whose due time the server clock had not reached, or an alias targeting a key
    /// deleted in the meantime).
    Ignored,
}

/// All accounts' keys and aliases, folded from the control stream.
///
/// Memory: a live key is a B-tree slot (16-byte id, 48-byte head, 16-byte entry) pointing
/// at one boxed [`Key`] of 200 bytes plus its strings, tags and 96 bytes per material
/// version — about 450 bytes for a typical key; a tombstone keeps only the slot.
#[derive(Debug, Clone, Default)]
pub struct Projection {
    pub(crate) accounts: BTreeMap<String, AccountState>,
    pub(crate) last_applied_seq: u64,
    /// Derived index of time-driven actions: (due ms, kind, account, key).
    pub(crate) due: BTreeSet<(u64, DueKind, String, KeyId)>,
}

/// BLAKE3 derive-key context of [`Projection::state_digest`].
pub const STATE_DIGEST_CONTEXT: &str = "keyledger 2026-11-29 kms projection state digest v1";

impl Projection {
    /// An empty projection (nothing applied).
    pub fn new() -> Self {
        Self::default()
    }

    /// Stream sequence of the last applied event (0 if none).
    pub fn last_applied_seq(&self) -> u64 {
        self.last_applied_seq
    }

    /// A live key of `account`.
    pub fn key(&self, account: &str, key_id: &KeyId) -> Option<&Key> {
        match &self.accounts.get(account)?.keys.get(key_id)?.entry {
            KeyEntry::Live(k) => Some(k),
            _ => None,
        }
    }

    /// Whether `key_id` of `account` has been deleted (a tombstone).
    pub fn is_deleted(&self, account: &str, key_id: &KeyId) -> bool {
        self.deleted_unix_ms(account, key_id).is_some()
    }

    /// When a deleted key's deletion took effect (server time, ms), if it is a tombstone.
    pub fn deleted_unix_ms(&self, account: &str, key_id: &KeyId) -> Option<u64> {
        match self.accounts.get(account)?.keys.get(key_id)?.entry {
            KeyEntry::Deleted { deleted_unix_ms } => Some(deleted_unix_ms),
            _ => None,
        }
    }

    /// Every tombstone as (account, key id), sorted. O(keys).
    pub fn deleted_keys(&self) -> Vec<(String, KeyId)> {
        let mut out = Vec::new();
        for (account, a) in &self.accounts {
            for (id, slot) in &a.keys {
                if matches!(slot.entry, KeyEntry::Deleted { .. }) {
                    out.push((account.clone(), *id));
                }
            }
        }
        out
    }

    /// Every live key of every account, by account then key id.
    pub fn all_keys(&self) -> impl Iterator<Item = &Key> + '_ {
        self.accounts.values().flat_map(|a| {
            a.keys.values().filter_map(|s| match &s.entry {
                KeyEntry::Live(k) => Some(&**k),
                _ => None,
            })
        })
    }

    /// Live keys of `account` (every state), ascending by key id.
    pub fn keys(&self, account: &str) -> impl Iterator<Item = &Key> + '_ {
        self.accounts.get(account).into_iter().flat_map(|a| {
            a.keys.values().filter_map(|s| match &s.entry {
                KeyEntry::Live(k) => Some(&**k),
                _ => None,
            })
        })
    }

    /// Live keys of `account` with an id greater than `after` (or all), ascending.
    pub fn keys_after(&self, account: &str, after: Option<KeyId>) -> impl Iterator<Item = &Key> + '_ {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.accounts.get(account).into_iter().flat_map(move |a| {
            a.keys.range((lower, Bound::Unbounded)).filter_map(|(_, s)| match &s.entry {
                KeyEntry::Live(k) => Some(&**k),
                _ => None,
            })
        })
    }

    /// Number of live keys of `account` (any state; the key quota counts these).
    pub fn live_key_count(&self, account: &str) -> usize {
        self.accounts.get(account).map_or(0, |a| a.live_keys)
    }

    /// The live key with id `key_id` in whichever account holds it (key ids are random UUIDs,
    /// unique across accounts). One map lookup per account.
    pub fn key_in_any_account(&self, key_id: &KeyId) -> Option<&Key> {
        self.accounts.values().find_map(|a| match &a.keys.get(key_id)?.entry {
            KeyEntry::Live(k) => Some(&**k),
            _ => None,
        })
    }

    /// Every live key of every account (ListRetirableGrants scans them).
    pub fn all_live_keys(&self) -> impl Iterator<Item = &Key> + '_ {
        self.accounts.values().flat_map(|a| {
            a.keys.values().filter_map(|s| match &s.entry {
                KeyEntry::Live(k) => Some(&**k),
                _ => None,
            })
        })
    }

    /// Number of live aliases of `account` (the per-account alias quota counts these).
    pub fn alias_count(&self, account: &str) -> usize {
        self.accounts.get(account).map_or(0, |a| a.aliases.values().filter(|s| s.alias.is_some()).count())
    }

    /// A live alias of `account` by full name (`alias/…`).
    pub fn alias(&self, account: &str, alias_name: &str) -> Option<&Alias> {
        self.accounts.get(account)?.aliases.get(alias_name)?.alias.as_ref()
    }

    /// Live aliases of `account` with a name greater than `after` (or all), ascending by name.
    pub fn aliases_after<'a>(
        &'a self,
        account: &str,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a str, &'a Alias)> + 'a {
        use std::ops::Bound;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.accounts.get(account).into_iter().flat_map(move |a| {
            a.aliases
                .range::<str, _>((lower, Bound::Unbounded))
                .filter_map(|(name, s)| s.alias.as_ref().map(|al| (name.as_str(), al)))
        })
    }

    /// The chain head of an aggregate (genesis for a never-seen one).
    pub fn head(&self, kind: AggregateKind, account: &str, aggregate_id: &str) -> AggregateHead {
        let found = self.accounts.get(account).and_then(|a| match kind {
            AggregateKind::Key => KeyId::parse(aggregate_id).and_then(|id| a.keys.get(&id)).map(|s| s.head),
            AggregateKind::Alias => a.aliases.get(aggregate_id).map(|s| s.head),
            _ => None,
        });
        found.unwrap_or_else(|| AggregateHead::genesis(kind, account, aggregate_id))
    }

    /// Time-driven actions due at or before `now_unix_ms`, earliest first, at most `max`:
    /// (due ms, kind, account, key id).
    pub fn due_before(
        &self,
        now_unix_ms: u64,
        max: usize,
    ) -> impl Iterator<Item = &(u64, DueKind, String, KeyId)> + '_ {
        self.due.iter().take_while(move |(due, ..)| *due <= now_unix_ms).take(max)
    }

    /// Applies one event read from the control stream at `stream_seq`, whose JetStream
    /// (server) timestamp is `server_time_unix_ms`.
    ///
    /// Checks, in order: `stream_seq` is after the last applied one; the event is a key or
    /// alias event with a matching body and a well-formed id; its `aggregate_seq` equals the
    /// head's `next_aggregate_seq` and its `prev_hash` the head's `last_hash`. On any failure
    /// the projection is unchanged. Then the body is folded (see `evolve`) and the head
    /// advances — also when the body did not apply ([`Applied::Ignored`]).
    pub fn apply(&mut self, stream_seq: u64, server_time_unix_ms: u64, event: &Event) -> Result<Applied, ApplyError> {
        if stream_seq <= self.last_applied_seq {
            return Err(ApplyError::StreamSeqNotIncreasing { last: self.last_applied_seq, got: stream_seq });
        }
        let r = &event.record;
        let kind = AggregateKind::from_code(r.aggregate_kind)
            .ok_or_else(|| ApplyError::Malformed(format!("unknown aggregate kind {}", r.aggregate_kind)))?;
        crate::evolve::check_fits(kind, event)?;
        let head = self.head(kind, &r.account, &r.aggregate_id);
        if r.aggregate_seq != head.next_aggregate_seq || r.prev_hash != head.last_hash {
            return Err(ApplyError::ChainBroken {
                kind,
                account: r.account.clone(),
                aggregate_id: r.aggregate_id.clone(),
                expected_seq: head.next_aggregate_seq,
                got_seq: r.aggregate_seq,
                expected_prev_hash: hex::encode(head.last_hash),
                got_prev_hash: hex::encode(r.prev_hash),
            });
        }
        let new_head = AggregateHead {
            next_aggregate_seq: head.next_aggregate_seq + 1,
            last_hash: event.hash,
            last_stream_seq: stream_seq,
        };
        let applied = crate::evolve::fold(self, kind, event, server_time_unix_ms, new_head)?;
        self.last_applied_seq = stream_seq;
        Ok(applied)
    }

    /// BLAKE3 (derive-key, [`STATE_DIGEST_CONTEXT`]) over the postcard encoding of the whole
    /// state: accounts in order, each with its keys (live, tombstone or absent, by id) and
    /// alias slots (by name), every aggregate head included. Derived indexes and
    /// `last_applied_seq` are not part of it. Two projections that applied the same events
    /// have the same digest; this is how replay equality is proven.
    pub fn state_digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(STATE_DIGEST_CONTEXT);
        postcard::to_io(&self.accounts, &mut hasher).expect("hashing cannot fail");
        *hasher.finalize().as_bytes()
    }

    pub(crate) fn due_entry(account: &str, key: &Key) -> Option<(u64, DueKind, String, KeyId)> {
        key.due().map(|(t, k)| (t, k, account.to_owned(), key.id))
    }
}

/// The eight bytes that open a projection snapshot ([`Projection::snapshot`]).
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"KLSNAP01";

/// Why snapshot bytes were refused by [`Projection::from_snapshot`]. Messages hold no state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a snapshot of this format (magic), or malformed postcard.
    #[error("not a projection snapshot this build reads: {0}")]
    Decode(String),
    /// The bytes decode but are not the one canonical encoding (trailing bytes, padding).
    #[error("the snapshot is not canonically encoded")]
    NotCanonical,
}

#[derive(Serialize)]
struct SnapshotOut<'a> {
    magic: [u8; 8],
    last_applied_seq: u64,
    accounts: &'a BTreeMap<String, AccountState>,
}

#[derive(Deserialize)]
struct SnapshotIn {
    magic: [u8; 8],
    last_applied_seq: u64,
    accounts: BTreeMap<String, AccountState>,
}

impl Projection {
    /// The snapshot of this projection: postcard of (`SNAPSHOT_MAGIC`, `last_applied_seq`,
    /// the accounts with every key, alias and aggregate head) — the state
    /// [`Projection::state_digest`] covers plus the position. Deterministic: every projection
    /// that applied the same records gives the same bytes, so a snapshot's hash can be
    /// committed in the log by one process and checked by another.
    pub fn snapshot(&self) -> Vec<u8> {
        postcard::to_stdvec(&SnapshotOut {
            magic: SNAPSHOT_MAGIC,
            last_applied_seq: self.last_applied_seq,
            accounts: &self.accounts,
        })
        .expect("the projection encodes")
    }

    /// The projection a [`Projection::snapshot`] holds, with its derived indexes (live key
    /// counts, due actions) rebuilt.
    ///
    /// # Errors
    /// [`SnapshotError::Decode`] for bytes that are not a snapshot; [`SnapshotError::NotCanonical`]
    /// for bytes that do not re-encode to themselves.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Projection, SnapshotError> {
        let (s, rest): (SnapshotIn, &[u8]) =
            postcard::take_from_bytes(bytes).map_err(|e| SnapshotError::Decode(e.to_string()))?;
        if s.magic != SNAPSHOT_MAGIC {
            return Err(SnapshotError::Decode("bad magic".to_owned()));
        }
        if !rest.is_empty() {
            return Err(SnapshotError::NotCanonical);
        }
        let mut p = Projection { accounts: s.accounts, last_applied_seq: s.last_applied_seq, due: BTreeSet::new() };
        if p.snapshot() != bytes {
            return Err(SnapshotError::NotCanonical);
        }
        for (name, account) in &mut p.accounts {
            account.live_keys = account.keys.values().filter(|k| matches!(k.entry, KeyEntry::Live(_))).count();
            for slot in account.keys.values() {
                if let KeyEntry::Live(k) = &slot.entry {
                    if let Some(d) = Projection::due_entry(name, k) {
                        p.due.insert(d);
                    }
                }
            }
        }
        Ok(p)
    }
}

/// A day count as milliseconds.
pub fn days_ms(days: u16) -> u64 {
    u64::from(days) * DAY_MS
}
