//! What one database session knows of chains' committed heads between its transactions.
//!
//! Appending needs the chain's head. Read from the table, it costs an index probe and a heap
//! fetch per transaction: a fifth of what a one-row insert costs. Yet when a single session
//! writes (a migration, one ingest worker), the head is the one it committed last. This cache
//! knows when that holds.
//!
//! The proof is a counter: every transaction's first append to a chain draws a ticket from one
//! shared sequence while it holds that chain's lock. When a session's tickets follow each other
//! with no number between, nobody else appended to any chain in between, so every head it
//! recorded since the last gap is still the head. Any gap, and anything else that may have changed
//! the table behind the triggers' back (the caller reports those: a change of the table's
//! definition, a restore, a prepared transaction), makes everything recorded before it stale; a
//! stale head is still a lower bound for the sequence number, a hint for the probe.

use std::collections::HashMap;

use crate::chain::ChainHead;

/// Chains a session keeps heads for; past this (a session writing for very many orgs) it starts
/// over.
const MAX_CHAINS: usize = 10_000;

#[derive(Debug, Default)]
pub struct HeadCache {
    /// The last ticket this session drew, while nothing else made the cache stale.
    last_ticket: Option<i64>,
    /// Bumped whenever the heads recorded so far may be stale.
    epoch: u64,
    heads: HashMap<Vec<u8>, Recorded>,
}

#[derive(Debug, Clone, Copy)]
struct Recorded {
    head: ChainHead,
    epoch: u64,
}

/// What the cache knows of a chain, given a fresh ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// The chain's committed head: no need to read it.
    Head(ChainHead),
    /// Read the head; it is at or after this sequence number.
    AtLeast(i64),
    /// Read the head; nothing is known.
    Nothing,
}

impl HeadCache {
    /// What is known of `chain_id` once this session holds the chain's lock and has drawn
    /// `ticket` (`None`: no counter to draw from, so nothing can be proven current).
    pub fn lookup(&mut self, chain_id: &[u8], ticket: Option<i64>) -> Known {
        let consecutive = matches!(
            (self.last_ticket, ticket),
            (Some(last), Some(now)) if last.checked_add(1) == Some(now)
        );
        if !consecutive {
            self.epoch += 1;
        }
        self.last_ticket = ticket;
        match self.heads.get(chain_id) {
            Some(r) if r.epoch == self.epoch => Known::Head(r.head),
            Some(r) => Known::AtLeast(r.head.seq),
            None => Known::Nothing,
        }
    }

    /// Records `head` as the chain's committed head, current now: read under the chain's lock, or
    /// committed by this session while holding it.
    pub fn record(&mut self, chain_id: &[u8], head: ChainHead) {
        let recorded = Recorded {
            head,
            epoch: self.epoch,
        };
        if let Some(r) = self.heads.get_mut(chain_id) {
            *r = recorded;
            return;
        }
        if self.heads.len() >= MAX_CHAINS {
            self.heads.clear();
        }
        self.heads.insert(chain_id.to_vec(), recorded);
    }

    /// Everything recorded so far may be stale: rows reached the table some other way.
    pub fn invalidate(&mut self) {
        self.epoch += 1;
        self.last_ticket = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(seq: i64) -> ChainHead {
        ChainHead {
            seq,
            hash: [seq.to_le_bytes()[0]; 32],
        }
    }

    #[test]
    fn a_lone_writer_reads_each_head_once() {
        let mut cache = HeadCache::default();
        assert_eq!(cache.lookup(b"global", Some(1)), Known::Nothing);
        cache.record(b"global", head(1));
        assert_eq!(cache.lookup(b"global", Some(2)), Known::Head(head(1)));
        cache.record(b"global", head(2));
        assert_eq!(cache.lookup(b"org:a", Some(3)), Known::Nothing);
        cache.record(b"org:a", head(7));
        assert_eq!(cache.lookup(b"global", Some(4)), Known::Head(head(2)));
        assert_eq!(cache.lookup(b"org:a", Some(5)), Known::Head(head(7)));
    }

    #[test]
    fn a_ticket_drawn_by_anyone_else_makes_every_head_a_hint() {
        let mut cache = HeadCache::default();
        cache.lookup(b"global", Some(10));
        cache.record(b"global", head(5));
        cache.lookup(b"org:a", Some(11));
        cache.record(b"org:a", head(3));
        // Ticket 12 went to another session: it may have appended to either chain.
        assert_eq!(cache.lookup(b"org:a", Some(13)), Known::AtLeast(3));
        assert_eq!(cache.lookup(b"global", Some(14)), Known::AtLeast(5));
        // What is read after the gap, under the lock, is current again.
        cache.record(b"global", head(6));
        assert_eq!(cache.lookup(b"global", Some(15)), Known::Head(head(6)));
        assert_eq!(cache.lookup(b"org:a", Some(16)), Known::AtLeast(3));
    }

    #[test]
    fn an_invalidation_stales_everything_recorded_before_it() {
        let mut cache = HeadCache::default();
        cache.lookup(b"global", Some(1));
        cache.record(b"global", head(1));
        cache.invalidate();
        // Consecutive tickets do not restore trust lost to an invalidation.
        assert_eq!(cache.lookup(b"global", Some(2)), Known::AtLeast(1));
        cache.record(b"global", head(1));
        assert_eq!(cache.lookup(b"global", Some(3)), Known::Head(head(1)));
    }

    #[test]
    fn without_a_counter_nothing_is_ever_current() {
        let mut cache = HeadCache::default();
        cache.lookup(b"global", None);
        cache.record(b"global", head(1));
        assert_eq!(cache.lookup(b"global", None), Known::AtLeast(1));
        // A counter that comes back proves nothing about the time it was missing.
        assert_eq!(cache.lookup(b"global", Some(1)), Known::AtLeast(1));
    }

    #[test]
    fn a_counter_that_starts_over_is_a_gap() {
        let mut cache = HeadCache::default();
        cache.lookup(b"global", Some(41));
        cache.record(b"global", head(9));
        // The extension was dropped and created again: the counter restarts at 1.
        assert_eq!(cache.lookup(b"global", Some(1)), Known::AtLeast(9));
        assert_eq!(cache.lookup(b"global", Some(i64::MIN)), Known::AtLeast(9));
    }

    #[test]
    fn the_cache_starts_over_past_its_bound() {
        let mut cache = HeadCache::default();
        cache.lookup(b"x", Some(1));
        for i in 0..MAX_CHAINS {
            cache.record(format!("org:{i}").as_bytes(), head(1));
        }
        assert_eq!(cache.heads.len(), MAX_CHAINS);
        cache.record(b"one more", head(2));
        assert_eq!(cache.heads.len(), 1);
        assert_eq!(cache.lookup(b"one more", Some(2)), Known::Head(head(2)));
    }
}
