//! Read-your-writes for AWS clients, which send no minimum sequence: the gateway remembers the
//! highest `Keyledger-Log-Seq` each access key has seen and sends it as `Keyledger-Min-Seq`.

use std::collections::HashMap;
use std::sync::Mutex;

/// The highest log sequence seen per access key id, bounded.
///
/// At most `capacity` access keys are remembered. When a new key does not fit, the entry with
/// the lowest sequence is evicted and its sequence is folded into a floor that every
/// unremembered key gets: an evicted key still reads its own writes (it may wait for a few
/// writes of others, never for fewer of its own).
#[derive(Debug)]
pub struct SeqMemory {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    seqs: HashMap<String, u64>,
    floor: u64,
}

impl SeqMemory {
    /// Remembers at most `capacity` (≥ 1) access keys.
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), inner: Mutex::new(Inner::default()) }
    }

    /// The minimum sequence to send for `access_key_id` (0: none).
    pub fn min_seq(&self, access_key_id: &str) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.seqs.get(access_key_id).copied().unwrap_or(inner.floor).max(inner.floor)
    }

    /// Records that `access_key_id` saw `seq`.
    pub fn observe(&self, access_key_id: &str, seq: u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = inner.seqs.get_mut(access_key_id) {
            *s = (*s).max(seq);
            return;
        }
        if inner.seqs.len() >= self.capacity {
            let lowest = inner.seqs.iter().min_by_key(|(_, s)| **s).map(|(k, s)| (k.clone(), *s));
            if let Some((k, s)) = lowest {
                inner.seqs.remove(&k);
                inner.floor = inner.floor.max(s);
            }
        }
        inner.seqs.insert(access_key_id.to_owned(), seq);
    }

    /// Number of access keys remembered.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).seqs.len()
    }

    /// True when none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_the_highest_sequence_it_saw() {
        let m = SeqMemory::new(10);
        assert_eq!(m.min_seq("A"), 0);
        m.observe("A", 5);
        m.observe("A", 3);
        m.observe("B", 9);
        assert_eq!(m.min_seq("A"), 5);
        assert_eq!(m.min_seq("B"), 9);
        assert_eq!(m.min_seq("C"), 0);
    }

    #[test]
    fn an_evicted_key_still_reads_its_own_writes() {
        let m = SeqMemory::new(2);
        m.observe("A", 4);
        m.observe("B", 7);
        m.observe("C", 8); // evicts A (lowest), floor 4
        assert_eq!(m.len(), 2);
        assert!(m.min_seq("A") >= 4);
        m.observe("D", 9); // evicts B, floor 7
        assert!(m.min_seq("B") >= 7);
        assert_eq!(m.min_seq("D"), 9);
        assert_eq!(m.len(), 2);
    }
}
