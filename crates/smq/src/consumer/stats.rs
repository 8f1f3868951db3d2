//! The consumer's counters, for the embedding runtime to export as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::message::{BodyShape, ShapesSeen};

/// Counters of one [`crate::Consumer`], updated as it runs. Read them any
/// time (`Relaxed` loads: each value is exact, the set is not a snapshot).
///
/// All are totals since start except [`ConsumerStats::in_flight`].
#[derive(Debug, Default)]
pub struct ConsumerStats {
    received: AtomicU64,
    recorded: AtomicU64,
    deleted: AtomicU64,
    poison: AtomicU64,
    poison_deleted: AtomicU64,
    unavailable: AtomicU64,
    delete_failures: AtomicU64,
    receive_errors: AtomicU64,
    backoffs: AtomicU64,
    visibility_extensions: AtomicU64,
    in_flight: AtomicU64,
    shapes_seen: ShapesSeen,
}

pub(crate) enum Counter {
    Received,
    Recorded,
    Deleted,
    Poison,
    PoisonDeleted,
    Unavailable,
    DeleteFailures,
    ReceiveErrors,
    Backoffs,
    VisibilityExtensions,
}

impl ConsumerStats {
    /// Messages received (each delivery counts).
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Deliveries the intake answered [`crate::IntakeOutcome::Recorded`].
    pub fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Messages deleted, recorded and poison alike.
    pub fn deleted(&self) -> u64 {
        self.deleted.load(Ordering::Relaxed)
    }

    /// Poison deliveries: bodies that could not be decoded, and requests the
    /// intake refused. A poison message counts once per delivery.
    pub fn poison(&self) -> u64 {
        self.poison.load(Ordering::Relaxed)
    }

    /// Poison messages deleted after reaching the DequeueCount limit.
    pub fn poison_deleted(&self) -> u64 {
        self.poison_deleted.load(Ordering::Relaxed)
    }

    /// Deliveries the intake could not take (journal down or overloaded, or
    /// a panic): left on the queue.
    pub fn unavailable(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// Deletes that failed for good (the handle had expired, or SMQ kept
    /// failing): those messages come back, and dedupe absorbs them.
    pub fn delete_failures(&self) -> u64 {
        self.delete_failures.load(Ordering::Relaxed)
    }

    /// Failed receives: network, throttling, 5xx, configuration errors.
    pub fn receive_errors(&self) -> u64 {
        self.receive_errors.load(Ordering::Relaxed)
    }

    /// Times a receiver waited before polling again (after an error, an
    /// immediate empty answer, or an unavailable intake).
    pub fn backoffs(&self) -> u64 {
        self.backoffs.load(Ordering::Relaxed)
    }

    /// ChangeMessageVisibility calls that kept a slow record's message
    /// hidden.
    pub fn visibility_extensions(&self) -> u64 {
        self.visibility_extensions.load(Ordering::Relaxed)
    }

    /// Messages received and not yet settled (recorded and deleted, left, or
    /// given up on shutdown).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, counter: Counter, n: u64) {
        let cell = match counter {
            Counter::Received => &self.received,
            Counter::Recorded => &self.recorded,
            Counter::Deleted => &self.deleted,
            Counter::Poison => &self.poison,
            Counter::PoisonDeleted => &self.poison_deleted,
            Counter::Unavailable => &self.unavailable,
            Counter::DeleteFailures => &self.delete_failures,
            Counter::ReceiveErrors => &self.receive_errors,
            Counter::Backoffs => &self.backoffs,
            Counter::VisibilityExtensions => &self.visibility_extensions,
        };
        cell.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn in_flight_add(&self, n: u64) {
        self.in_flight.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn in_flight_sub(&self, n: u64) {
        // Never below zero, even if a caller miscounts.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// Whether this is the first time `shape` is seen (then the consumer
    /// logs it at INFO).
    pub(crate) fn first_sighting(&self, shape: BodyShape) -> bool {
        self.shapes_seen.first(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::message::{Encoding, Envelope};

    #[test]
    fn each_shape_is_new_once() {
        let stats = ConsumerStats::default();
        let shapes: Vec<BodyShape> = [Envelope::None, Envelope::TopicXml, Envelope::TopicJson]
            .into_iter()
            .flat_map(|envelope| {
                [Encoding::Raw, Encoding::Base64]
                    .into_iter()
                    .map(move |encoding| BodyShape { envelope, encoding })
            })
            .collect();
        for shape in &shapes {
            assert!(stats.first_sighting(*shape), "{shape}");
        }
        for shape in &shapes {
            assert!(!stats.first_sighting(*shape), "{shape}");
        }
    }

    #[test]
    fn in_flight_never_goes_below_zero() {
        let stats = ConsumerStats::default();
        stats.in_flight_add(2);
        stats.in_flight_sub(3);
        assert_eq!(stats.in_flight(), 0);
    }
}
