//! Key material: prepared (generated, wrapped, stored) by keyd before it decides, fetched,
//! checked against the log's commitment and unwrapped by cryptod, erased on deletion.
//!
//! Unwrapped material lives only in this cache (zeroized on drop) and is evicted when a key
//! is deleted. The cache is bounded ([`MAX_CACHED_MATERIALS`]); a miss costs one direct get
//! from the material stream plus one unwrap.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keyledger_crypto::{KeyMaterial, MaterialAad, RootKey};
use keyledger_events::MaterialRefV1;
use keyledger_kms::{ErrorKind, KmsError};
use keyledger_log::MaterialStore;

/// Most unwrapped materials held at once (32 bytes each plus bookkeeping).
pub const MAX_CACHED_MATERIALS: usize = 65_536;

/// (key id bytes, material version).
type MaterialSlot = ([u8; 16], u32);

/// Bounded cache of unwrapped material, keyed by (key id, material version).
pub struct MaterialCache {
    store: MaterialStore,
    root: Arc<RootKey>,
    cache: Mutex<HashMap<MaterialSlot, Arc<KeyMaterial>>>,
}

fn unavailable(what: &str) -> KmsError {
    KmsError::new(
        ErrorKind::DependencyTimeout,
        format!("The key material store is not reachable ({what}); retry the request."),
    )
}

impl MaterialCache {
    /// A cache over `store`, unwrapping with `root`.
    pub fn new(store: MaterialStore, root: Arc<RootKey>) -> Self {
        Self { store, root, cache: Mutex::new(HashMap::new()) }
    }

    /// Generates fresh material for `(account, key_id, version)`, wraps it under the root key
    /// and stores the wrapped bytes in the material stream. Returns the commitment the event
    /// will carry. Nothing secret leaves this function.
    pub async fn prepare(
        &self,
        account: &str,
        key_id: &[u8; 16],
        key_id_text: &str,
        version: u32,
    ) -> Result<MaterialRefV1, KmsError> {
        self.store_material(account, key_id, key_id_text, version, &KeyMaterial::generate()).await
    }

    /// Wraps `material` (generated here, or imported) under the root key for
    /// `(account, key_id, version)` and stores it in the material stream once. Returns the
    /// commitment the event will carry.
    ///
    /// Errors: `DependencyTimeoutException` when the store is unreachable;
    /// `KMSInternalException` when the subject already holds other bytes.
    pub async fn store_material(
        &self,
        account: &str,
        key_id: &[u8; 16],
        key_id_text: &str,
        version: u32,
        material: &KeyMaterial,
    ) -> Result<MaterialRefV1, KmsError> {
        let aad = MaterialAad { account, key_id: *key_id, version };
        let wrapped = self.root.wrap(&aad, material);
        let material_id = self.root.material_id(material);
        let reference =
            MaterialRefV1 { version, material_id, root_key_id: self.root.id(), wrapped_digest: wrapped.digest() };
        self.store.put(account, key_id_text, version, &material_id, wrapped.as_bytes()).await.map_err(|e| match e {
            keyledger_log::LogError::MaterialConflict { .. } => {
                tracing::error!(key_id = key_id_text, version, "the material subject already holds other bytes");
                KmsError::new(ErrorKind::KMSInternal, "The key material could not be stored; retry the request.")
            }
            e => {
                tracing::warn!(error = %e, "cannot store prepared key material");
                unavailable("put")
            }
        })?;
        Ok(reference)
    }

    /// Erases material that was prepared but will not be committed (the decision failed or
    /// another writer won the race).
    pub async fn discard(&self, account: &str, key_id_text: &str, reference: &MaterialRefV1) {
        if let Err(e) = self.store.erase(account, key_id_text, reference.version, &reference.material_id).await {
            tracing::warn!(error = %e, "cannot erase discarded key material; it stays unreferenced until the key is deleted");
        }
    }

    /// The unwrapped material the log committed to in `reference`.
    ///
    /// Errors: `DependencyTimeoutException` when the store is unreachable;
    /// `KMSInternalException` when the stored bytes are missing or do not match the commitment
    /// (the log says the material exists, so this is an integrity failure, never a client error).
    pub async fn get(
        &self,
        account: &str,
        key_id: &[u8; 16],
        key_id_text: &str,
        reference: &MaterialRefV1,
    ) -> Result<Arc<KeyMaterial>, KmsError> {
        if let Some(m) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&(*key_id, reference.version)) {
            return Ok(m.clone());
        }
        let integrity = || KmsError::new(ErrorKind::KMSInternal, "The key material failed its integrity check.");
        let bytes = self
            .store
            .get(account, key_id_text, reference.version, &reference.material_id)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot fetch key material");
                unavailable("get")
            })?
            .ok_or_else(|| {
                tracing::error!(key_id = key_id_text, version = reference.version, "committed key material is missing");
                integrity()
            })?;
        if *blake3::hash(&bytes).as_bytes() != reference.wrapped_digest {
            tracing::error!(
                key_id = key_id_text,
                version = reference.version,
                "stored key material does not match its commitment"
            );
            return Err(integrity());
        }
        let aad = MaterialAad { account, key_id: *key_id, version: reference.version };
        let material = self.root.unwrap_verified(&aad, &bytes, &reference.material_id).map_err(|e| {
            tracing::error!(key_id = key_id_text, version = reference.version, error = %e, "cannot unwrap key material");
            integrity()
        })?;
        let material = Arc::new(material);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED_MATERIALS {
            cache.clear();
        }
        cache.insert((*key_id, reference.version), material.clone());
        Ok(material)
    }

    /// Erases the stored copy of one deleted material (imported material that expired or was
    /// deleted), only if the stored bytes are still the ones `reference` committed to, and
    /// drops the key from the cache. Returns whether a message was erased.
    pub async fn erase_deleted(
        &self,
        account: &str,
        key_id: &[u8; 16],
        key_id_text: &str,
        reference: &MaterialRefV1,
    ) -> Result<bool, KmsError> {
        self.evict_key(key_id);
        self.store
            .erase_if_digest(account, key_id_text, reference.version, &reference.material_id, &reference.wrapped_digest)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "cannot erase deleted key material");
                unavailable("erase")
            })
    }

    /// Drops every cached version of a key.
    pub fn evict_key(&self, key_id: &[u8; 16]) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).retain(|(k, _), _| k != key_id);
    }

    /// Erases every stored material of a key (after its deletion event took effect).
    pub async fn erase_key(&self, account: &str, key_id: &[u8; 16], key_id_text: &str) -> Result<usize, KmsError> {
        self.evict_key(key_id);
        self.store.erase_key(account, key_id_text).await.map_err(|e| {
            tracing::warn!(error = %e, "cannot erase key material");
            unavailable("erase")
        })
    }
}
