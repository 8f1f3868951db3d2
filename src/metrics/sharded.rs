//! Counters, gauges and histograms that threads update without sharing a
//! cache line.
//!
//! Every request updates six series, eight times in all. With one atomic per
//! series (and a lock per histogram, as `prometheus-client`'s are), each
//! update by one worker thread takes the cache line away from the others. Here each series
//! keeps one slot per shard, on a cache line of its own; a thread adds to its
//! shard's slot, and a scrape sums the slots. Threads are given shards
//! round-robin on their first update, so each of the runtime's workers has
//! its own while there are no more threads than shards.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// How many shards every series has: the machine's parallelism as a power
/// of two, at least 4 (threads other than the workers take shards too) and
/// at most 64.
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, usize::from)
            .clamp(4, 64)
            .next_power_of_two()
    })
}

/// The calling thread's shard.
fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|shard| *shard) & (shard_count() - 1)
}

/// A value on a cache line of its own (128 bytes: two lines are fetched
/// together on current x86 cores).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// One `T` per shard.
#[derive(Debug)]
struct Slots<T>(Box<[Padded<T>]>);

impl<T: Default> Default for Slots<T> {
    fn default() -> Self {
        Slots((0..shard_count()).map(|_| Padded::default()).collect())
    }
}

impl<T> Slots<T> {
    /// The calling thread's slot.
    fn mine(&self) -> &T {
        &self.0[shard()].0
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().map(|slot| &slot.0)
    }
}

/// A sum that threads add to, each in its own slot. Additions wrap, so a
/// gauge subtracts by adding the two's complement.
#[derive(Debug, Clone, Default)]
struct Tally(Arc<Slots<AtomicU64>>);

impl Tally {
    fn add(&self, n: u64) {
        self.0.mine().fetch_add(n, Ordering::Relaxed);
    }

    fn sum(&self) -> u64 {
        self.0
            .iter()
            .fold(0, |sum, n| sum.wrapping_add(n.load(Ordering::Relaxed)))
    }
}

/// A monotonic counter.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter(Tally);

impl Counter {
    pub(crate) fn inc(&self) {
        self.0.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.sum()
    }
}

impl TypedMetric for Counter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A gauge moved up and down by the threads; its value is the sum of their
/// moves.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gauge(Tally);

impl Gauge {
    pub(crate) fn inc(&self) {
        self.0.add(1);
    }

    pub(crate) fn dec(&self) {
        self.0.add(1u64.wrapping_neg());
    }

    pub(crate) fn get(&self) -> i64 {
        // Two's complement: the wrapped sum read as signed is the net move.
        self.0.sum() as i64
    }
}

impl TypedMetric for Gauge {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for Gauge {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Upper bounds of a [`Histogram`]'s buckets, in seconds: 5 ms to about 80 s,
/// doubling; a last bucket takes the rest.
const BOUNDS: [f64; 15] = {
    let mut bounds = [0.005; 15];
    let mut i = 1;
    while i < bounds.len() {
        bounds[i] = bounds[i - 1] * 2.0;
        i += 1;
    }
    bounds
};

/// One shard of a histogram: a count per bucket (the last one unbounded)
/// and the sum in nanoseconds.
#[derive(Debug, Default)]
struct Buckets {
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A histogram of durations, with the buckets of [`BOUNDS`].
#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram(Arc<Slots<Buckets>>);

impl Histogram {
    pub(crate) fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BOUNDS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BOUNDS.len());
        let mine = self.0.mine();
        mine.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        mine.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The sum in seconds, the count, and each bucket's own count with its
    /// upper bound (not cumulative: the encoder adds them up).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut counts = [0u64; BOUNDS.len() + 1];
        let mut sum_nanos = 0u64;
        for shard in self.0.iter() {
            for (total, count) in counts.iter_mut().zip(&shard.counts) {
                *total += count.load(Ordering::Relaxed);
            }
            sum_nanos = sum_nanos.wrapping_add(shard.sum_nanos.load(Ordering::Relaxed));
        }
        let buckets = BOUNDS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(counts)
            .collect();
        (sum_nanos as f64 / 1e9, counts.iter().sum(), buckets)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_from_many_threads_add_up() {
        let counter = Counter::default();
        let gauge = Gauge::default();
        let histogram = Histogram::default();
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        counter.inc();
                        gauge.inc();
                        histogram.observe(Duration::from_millis(3));
                    }
                    for _ in 0..400 {
                        gauge.dec();
                    }
                });
            }
        });
        assert_eq!(counter.get(), 8000);
        assert_eq!(gauge.get(), 8 * 600);
        let (sum, count, buckets) = histogram.snapshot();
        assert_eq!(count, 8000);
        assert!((sum - 24.0).abs() < 1e-6, "sum {sum}");
        assert_eq!(buckets[0], (0.005, 8000));
    }

    #[test]
    fn a_gauge_moved_down_by_one_thread_and_up_by_another_nets_out() {
        let gauge = Gauge::default();
        std::thread::scope(|scope| {
            scope.spawn(|| (0..5).for_each(|_| gauge.dec()));
        });
        assert_eq!(gauge.get(), -5);
        std::thread::scope(|scope| {
            scope.spawn(|| (0..7).for_each(|_| gauge.inc()));
        });
        assert_eq!(gauge.get(), 2);
    }

    #[test]
    fn a_duration_lands_in_the_first_bucket_that_holds_it() {
        let histogram = Histogram::default();
        histogram.observe(Duration::from_millis(5));
        histogram.observe(Duration::from_millis(6));
        histogram.observe(Duration::from_secs(3600));
        let (_, count, buckets) = histogram.snapshot();
        assert_eq!(count, 3);
        assert_eq!(buckets.len(), BOUNDS.len() + 1);
        assert_eq!(buckets[0].1, 1, "5 ms is within the 5 ms bound");
        assert_eq!(buckets[1], (0.01, 1));
        assert_eq!(
            buckets[BOUNDS.len()],
            (f64::INFINITY, 1),
            "an hour is past 80 s"
        );
        assert!((BOUNDS[14] - 81.92).abs() < 1e-9);
    }

    #[test]
    fn each_thread_keeps_its_shard() {
        let first = shard();
        assert_eq!(shard(), first);
        assert!(first < shard_count());
        assert!(shard_count().is_power_of_two());
    }
}
