//! What this instance has recently learned about keys, so a flood is answered from memory.
//!
//! Each entry holds a *lower bound* of the key's stored `tat` (from the limiter's own writes
//! and from `ALL_OLD` on refusals) and, after DynamoDB throttled the item, an instant before
//! which the key is refused outright. The bound is what makes local refusals sound: while
//! an item is live its `tat` only grows, so if the bound already refuses a request, the item
//! would too — the local answer is the one DynamoDB would give, minus the write. The bound
//! also picks which conditional write to try first, so an admitted request on a busy key
//! costs one write rather than a failed guess plus one.
//!
//! An entry is useless once both instants have passed (the key is then drained as far as we
//! know, and a drained key goes to DynamoDB anyway), which is when it is evicted. The map is
//! bounded; when it is full of live entries, the one that would expire first makes room.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// What is known about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Known {
    /// The stored `tat` is at least this.
    pub(crate) tat: u64,
    /// DynamoDB throttled the key's item; refuse it until this instant.
    pub(crate) blocked_until: u64,
}

impl Known {
    fn useful_until(&self) -> u64 {
        self.tat.max(self.blocked_until)
    }
}

#[derive(Debug)]
pub(crate) struct RecentKeys {
    entries: Mutex<HashMap<String, Known>>,
    capacity: usize,
}

impl RecentKeys {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// What is known about `pk` that still matters at `now`.
    pub(crate) fn get(&self, pk: &str, now: u64) -> Option<Known> {
        let mut entries = self.lock();
        match entries.get(pk) {
            Some(known) if known.useful_until() > now => Some(*known),
            Some(_) => {
                entries.remove(pk);
                None
            }
            None => None,
        }
    }

    /// Records that the stored `tat` of `pk` is at least `tat`.
    pub(crate) fn saw_tat(&self, pk: &str, tat: u64, now: u64) {
        self.update(pk, now, |known| known.tat = known.tat.max(tat));
    }

    /// Records that `pk` is to be refused until `until` (DynamoDB throttled its item).
    pub(crate) fn block(&self, pk: &str, until: u64, now: u64) {
        self.update(pk, now, |known| {
            known.blocked_until = known.blocked_until.max(until)
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn update(&self, pk: &str, now: u64, change: impl FnOnce(&mut Known)) {
        let mut entries = self.lock();
        if let Some(known) = entries.get_mut(pk) {
            change(known);
            return;
        }
        let mut known = Known::default();
        change(&mut known);
        if known.useful_until() <= now {
            return;
        }
        if entries.len() >= self.capacity {
            entries.retain(|_, k| k.useful_until() > now);
        }
        if entries.len() >= self.capacity {
            let soonest = entries
                .iter()
                .min_by_key(|(_, k)| k.useful_until())
                .map(|(pk, _)| pk.clone());
            if let Some(soonest) = soonest {
                entries.remove(&soonest);
            }
        }
        entries.insert(pk.to_owned(), known);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Known>> {
        // A panic while holding the lock cannot leave a map of plain integers inconsistent.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_forgotten_once_its_instants_have_passed() {
        let cache = RecentKeys::new(10);
        cache.saw_tat("predict#a", 1_000, 0);
        assert_eq!(cache.get("predict#a", 999).map(|k| k.tat), Some(1_000));
        assert_eq!(cache.get("predict#a", 1_000), None);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn the_bound_only_grows() {
        let cache = RecentKeys::new(10);
        cache.saw_tat("k", 5_000, 0);
        cache.saw_tat("k", 3_000, 0);
        assert_eq!(cache.get("k", 0).map(|k| k.tat), Some(5_000));
    }

    #[test]
    fn a_throttled_key_is_blocked_until_its_instant() {
        let cache = RecentKeys::new(10);
        cache.block("k", 2_000, 1_000);
        assert_eq!(cache.get("k", 1_999).map(|k| k.blocked_until), Some(2_000));
        assert_eq!(cache.get("k", 2_000), None);
    }

    #[test]
    fn a_full_cache_evicts_expired_entries_first_then_the_soonest_to_expire() {
        let cache = RecentKeys::new(3);
        cache.saw_tat("old", 100, 0);
        cache.saw_tat("late", 9_000, 0);
        cache.saw_tat("soon", 5_000, 0);
        cache.saw_tat("new1", 7_000, 200);
        assert_eq!(cache.get("old", 200), None);
        assert_eq!(cache.len(), 3);
        cache.saw_tat("new2", 8_000, 200);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("soon", 200), None);
        assert!(cache.get("late", 200).is_some());
        assert!(cache.get("new2", 200).is_some());
    }

    #[test]
    fn nothing_is_stored_for_a_key_that_is_already_drained() {
        let cache = RecentKeys::new(3);
        cache.saw_tat("k", 100, 100);
        assert_eq!(cache.len(), 0);
    }
}
