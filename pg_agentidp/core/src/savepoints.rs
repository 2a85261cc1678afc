//! Per-transaction state that follows savepoints: a map whose changes made inside a
//! subtransaction are undone when that subtransaction rolls back.
//!
//! The extension keeps the head of every chain its transaction appends to in one
//! ([`SavepointMap`]): rows appended inside a subtransaction that rolls back are gone, and so is
//! a chain lock taken inside it, so the heads must go back to what they were. Each entry carries
//! a stack of the states it had before each subtransaction's first change to it, innermost last;
//! rollback restores the top one (or removes the entry, when the subtransaction created it), and
//! a commit hands it to the parent, which keeps the older of two.
//!
//! Subtransactions are named by `S`, PostgreSQL's `SubTransactionId` in the extension; `None`
//! stands for the top-level transaction, which has no state to roll back to (its abort clears
//! everything).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// A map of `K` to `V` whose changes are undone with the subtransaction that made them.
#[derive(Debug, Clone)]
pub struct SavepointMap<K, V, S> {
    entries: HashMap<K, Entry<V, S>>,
}

#[derive(Debug, Clone)]
struct Entry<V, S> {
    value: V,
    /// (subtransaction, value before its first change; `None`: no entry then), innermost last.
    saved: Vec<(S, Option<V>)>,
}

impl<K, V, S> Default for SavepointMap<K, V, S> {
    fn default() -> Self {
        SavepointMap {
            entries: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq, V: Copy, S: Copy + Eq> SavepointMap<K, V, S> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The current value for `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.get(key).map(|e| e.value)
    }

    /// Sets `key` to `value` in subtransaction `sub` (`None`: the top-level transaction). The
    /// first change in a subtransaction saves the state before it.
    ///
    /// The key is copied only when the entry is new: a bulk load sets one entry a million times.
    pub fn set<Q>(&mut self, key: &Q, value: V, sub: Option<S>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        match self.entries.get_mut(key) {
            Some(entry) => {
                if let Some(sub) = sub {
                    if entry.saved.last().map(|s| s.0) != Some(sub) {
                        entry.saved.push((sub, Some(entry.value)));
                    }
                }
                entry.value = value;
            }
            None => {
                let saved = sub.map(|sub| (sub, None)).into_iter().collect();
                self.entries.insert(key.to_owned(), Entry { value, saved });
            }
        }
    }

    /// Subtransaction `sub` rolled back: every entry it changed is back to its state before,
    /// and an entry it created is gone.
    pub fn abort_sub(&mut self, sub: S) {
        self.entries.retain(|_, e| match e.saved.last() {
            Some(&(s, before)) if s == sub => {
                e.saved.pop();
                match before {
                    Some(value) => {
                        e.value = value;
                        true
                    }
                    None => false,
                }
            }
            _ => true,
        });
    }

    /// Subtransaction `sub` committed into `parent` (`None`: the top-level transaction): its
    /// changes are now the parent's, to be undone if the parent rolls back.
    pub fn commit_sub(&mut self, sub: S, parent: Option<S>) {
        for e in self.entries.values_mut() {
            let n = e.saved.len();
            if n == 0 || e.saved[n - 1].0 != sub {
                continue;
            }
            match parent {
                // The top-level transaction never rolls back to a saved state.
                None => {
                    e.saved.pop();
                }
                // The parent changed the entry too: it keeps its own, older, saved state.
                Some(parent) if n > 1 && e.saved[n - 2].0 == parent => {
                    e.saved.pop();
                }
                Some(parent) => e.saved[n - 1].0 = parent,
            }
        }
    }

    /// The transaction ended: nothing is kept.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Every entry and its current value.
    pub fn iter(&self) -> impl Iterator<Item = (&K, V)> + '_ {
        self.entries.iter().map(|(k, e)| (k, e.value))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Map = SavepointMap<Vec<u8>, i64, u32>;

    fn get(m: &Map, key: &[u8]) -> Option<i64> {
        m.get(key)
    }

    #[test]
    fn top_level_changes_are_plain_updates() {
        let mut m = Map::new();
        assert_eq!(get(&m, b"a"), None);
        m.set(b"a".as_slice(), 1, None);
        m.set(b"a".as_slice(), 2, None);
        m.set(b"b".as_slice(), 7, None);
        assert_eq!((get(&m, b"a"), get(&m, b"b")), (Some(2), Some(7)));
        assert_eq!(m.len(), 2);
        // An abort of a subtransaction that changed nothing changes nothing.
        m.abort_sub(2);
        assert_eq!((get(&m, b"a"), get(&m, b"b")), (Some(2), Some(7)));
        m.clear();
        assert!(m.is_empty());
    }

    #[test]
    fn rollback_restores_the_state_before_the_first_change() {
        let mut m = Map::new();
        m.set(b"a".as_slice(), 1, None);
        m.set(b"a".as_slice(), 2, Some(2));
        m.set(b"a".as_slice(), 3, Some(2));
        m.abort_sub(2);
        assert_eq!(get(&m, b"a"), Some(1));
    }

    #[test]
    fn rollback_removes_an_entry_the_subtransaction_created() {
        let mut m = Map::new();
        m.set(b"a".as_slice(), 1, None);
        m.set(b"b".as_slice(), 5, Some(2));
        m.set(b"b".as_slice(), 6, Some(2));
        m.abort_sub(2);
        assert_eq!((get(&m, b"a"), get(&m, b"b")), (Some(1), None));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn a_commit_into_the_top_level_is_final() {
        let mut m = Map::new();
        m.set(b"a".as_slice(), 1, Some(2));
        m.commit_sub(2, None);
        // A later subtransaction with a reused id rolls back only its own changes.
        m.set(b"a".as_slice(), 2, Some(3));
        m.abort_sub(3);
        assert_eq!(get(&m, b"a"), Some(1));
        m.abort_sub(2);
        assert_eq!(get(&m, b"a"), Some(1));
    }

    #[test]
    fn a_committed_child_is_undone_with_its_parent() {
        // 2 > 3 > 4, the entry changed in 2 and 4, not in 3.
        let mut m = Map::new();
        m.set(b"a".as_slice(), 0, None);
        m.set(b"a".as_slice(), 1, Some(2));
        m.set(b"a".as_slice(), 2, Some(4));
        m.commit_sub(4, Some(3));
        assert_eq!(get(&m, b"a"), Some(2));
        m.abort_sub(3);
        assert_eq!(get(&m, b"a"), Some(1));
        m.abort_sub(2);
        assert_eq!(get(&m, b"a"), Some(0));
    }

    #[test]
    fn the_parent_keeps_the_older_saved_state() {
        let mut m = Map::new();
        m.set(b"a".as_slice(), 0, None);
        m.set(b"a".as_slice(), 1, Some(2));
        m.set(b"a".as_slice(), 2, Some(3));
        m.commit_sub(3, Some(2));
        m.set(b"a".as_slice(), 3, Some(2));
        m.abort_sub(2);
        assert_eq!(get(&m, b"a"), Some(0));
    }

    #[test]
    fn an_entry_created_in_a_committed_child_goes_with_the_parent() {
        let mut m = Map::new();
        m.set(b"b".as_slice(), 1, Some(3));
        m.commit_sub(3, Some(2));
        assert_eq!(get(&m, b"b"), Some(1));
        m.abort_sub(2);
        assert_eq!(get(&m, b"b"), None);
    }

    #[test]
    fn sibling_subtransactions_are_independent() {
        let mut m = Map::new();
        m.set(b"a".as_slice(), 0, None);
        m.set(b"a".as_slice(), 1, Some(2));
        m.commit_sub(2, None);
        m.set(b"a".as_slice(), 2, Some(3));
        m.abort_sub(3);
        assert_eq!(get(&m, b"a"), Some(1));
        m.set(b"b".as_slice(), 9, Some(4));
        m.set(b"a".as_slice(), 3, Some(4));
        m.abort_sub(4);
        assert_eq!((get(&m, b"a"), get(&m, b"b")), (Some(1), None));
    }

    #[test]
    fn iter_yields_current_values() {
        let mut m = Map::new();
        m.set(b"a".as_slice(), 1, None);
        m.set(b"b".as_slice(), 2, Some(2));
        let mut all: Vec<(Vec<u8>, i64)> = m.iter().map(|(k, v)| (k.clone(), v)).collect();
        all.sort();
        assert_eq!(all, [(b"a".to_vec(), 1), (b"b".to_vec(), 2)]);
    }
}
