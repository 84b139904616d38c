//! Originals handed from the write that stored them to a render loop of the
//! same process, so the render does not read back bytes it was just given.
//!
//! An upload stores its original and queues a job; in `easel serve` (and in
//! `easel worker`, for an origin fetched in a fetch slot) a render loop of
//! the same process usually claims that job a moment later and would read
//! the whole object back: on the local store a page-cache copy into fresh
//! memory, on S3 a GET of megabytes. The hand-over keeps the bytes instead,
//! taken once, for a short time and under a byte budget; anything it does
//! not hold is read from the store as before. Keys are content hashes, so
//! held bytes are always the object's bytes; a delete drops them all the
//! same, so nothing the store no longer has is handed out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// What a [`crate::BlobStore`] with a hand-over keeps.
#[derive(Debug)]
pub(crate) struct Handover {
    budget_bytes: u64,
    ttl: Duration,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    entries: HashMap<String, (Bytes, Instant)>,
    bytes: u64,
}

impl Held {
    fn remove(&mut self, key: &str) -> Option<Bytes> {
        let (bytes, _) = self.entries.remove(key)?;
        self.bytes -= bytes.len() as u64;
        self.report();
        Some(bytes)
    }

    fn insert(&mut self, key: &str, bytes: &Bytes, at: Instant) {
        self.bytes += bytes.len() as u64;
        self.entries.insert(key.to_string(), (bytes.clone(), at));
        self.report();
    }

    /// What `/metrics` shows: bytes held that no render has taken yet.
    fn report(&self) {
        metrics::gauge!("easel_original_handover_bytes").set(self.bytes as f64);
    }
}

impl Handover {
    pub(crate) fn new(budget_bytes: u64, ttl: Duration) -> Self {
        Handover {
            budget_bytes,
            ttl,
            held: Mutex::default(),
        }
    }

    /// Holds `bytes` for `key` if they fit the budget beside what is held
    /// and has not expired. When full, the newest is what is left out: the
    /// queue renders the oldest first, whose bytes are already held.
    pub(crate) fn offer(&self, key: &str, bytes: &Bytes) {
        let size = bytes.len() as u64;
        if size > self.budget_bytes || self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut held = self.lock();
        let expired: Vec<String> = held
            .entries
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) >= self.ttl)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            held.remove(&key);
        }
        held.remove(key);
        if held.bytes + size <= self.budget_bytes {
            held.insert(key, bytes, now);
        }
    }

    /// The bytes held for `key`, no longer held after this; `None` when
    /// none are, or they are older than the time to live.
    pub(crate) fn take(&self, key: &str) -> Option<Bytes> {
        let mut held = self.lock();
        let (_, at) = held.entries.get(key)?;
        let fresh = at.elapsed() < self.ttl;
        let bytes = held.remove(key)?;
        fresh.then_some(bytes)
    }

    pub(crate) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Bytes held now (expired entries included until the next offer).
    pub(crate) fn held_bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Held> {
        // Nothing here can panic while holding the lock but an allocation
        // failure, after which the map is still consistent.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(n: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; n])
    }

    #[test]
    fn an_offered_object_is_taken_once() {
        let handover = Handover::new(100, Duration::from_secs(60));
        handover.offer("a", &bytes(40, 1));
        assert_eq!(handover.held_bytes(), 40);
        assert_eq!(handover.take("a"), Some(bytes(40, 1)));
        assert_eq!(handover.take("a"), None);
        assert_eq!(handover.held_bytes(), 0);
    }

    #[test]
    fn the_budget_leaves_out_the_newest_and_what_is_larger_than_it() {
        let handover = Handover::new(100, Duration::from_secs(60));
        handover.offer("a", &bytes(60, 1));
        handover.offer("b", &bytes(50, 2));
        handover.offer("huge", &bytes(101, 3));
        assert_eq!(handover.held_bytes(), 60);
        assert_eq!(handover.take("b"), None);
        assert_eq!(handover.take("huge"), None);
        // Taking one makes room for the next.
        assert_eq!(handover.take("a"), Some(bytes(60, 1)));
        handover.offer("b", &bytes(50, 2));
        assert_eq!(handover.take("b"), Some(bytes(50, 2)));
    }

    #[test]
    fn offering_a_held_key_again_counts_its_bytes_once() {
        let handover = Handover::new(100, Duration::from_secs(60));
        handover.offer("a", &bytes(60, 1));
        handover.offer("a", &bytes(60, 1));
        assert_eq!(handover.held_bytes(), 60);
    }

    #[test]
    fn expired_objects_are_not_handed_out_and_make_room() {
        let handover = Handover::new(100, Duration::from_millis(30));
        handover.offer("a", &bytes(60, 1));
        handover.offer("b", &bytes(30, 2));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(handover.take("a"), None);
        // The next offer sweeps what expired (b), so c fits.
        handover.offer("c", &bytes(90, 3));
        assert_eq!(handover.held_bytes(), 90);
        assert_eq!(handover.take("c"), Some(bytes(90, 3)));
    }

    #[test]
    fn a_zero_budget_or_time_to_live_holds_nothing() {
        for handover in [
            Handover::new(0, Duration::from_secs(60)),
            Handover::new(100, Duration::ZERO),
        ] {
            handover.offer("a", &bytes(10, 1));
            assert_eq!(handover.held_bytes(), 0);
            assert_eq!(handover.take("a"), None);
        }
    }

    #[test]
    fn a_forgotten_object_is_gone() {
        let handover = Handover::new(100, Duration::from_secs(60));
        handover.offer("a", &bytes(10, 1));
        handover.forget("a");
        assert_eq!(handover.held_bytes(), 0);
        assert_eq!(handover.take("a"), None);
    }
}
