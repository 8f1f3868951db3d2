//! One emulated queue: messages, visibility, receipt handles, long polls.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rand::Rng as _;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::ReceivedMessage;
use crate::error::{ErrorCode, ServiceError};
use crate::signature;

/// The largest body SMQ accepts by default (64 KiB).
pub(crate) const DEFAULT_MAX_MESSAGE_SIZE: usize = 64 * 1024;
/// SMQ's default visibility timeout.
pub(crate) const DEFAULT_VISIBILITY: Duration = Duration::from_secs(30);
/// The longest delay SMQ accepts (7 days).
const MAX_DELAY_SECS: u64 = 604_800;

/// A queue's attributes, as CreateQueue would set them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    pub(crate) visibility_timeout: Duration,
    pub(crate) polling_wait: Duration,
    pub(crate) max_message_size: usize,
    pub(crate) delay: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            visibility_timeout: DEFAULT_VISIBILITY,
            polling_wait: Duration::ZERO,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            delay: Duration::ZERO,
        }
    }
}

impl QueueConfig {
    /// How long a received message stays hidden (default 30 s; at least
    /// 1 s, as in SMQ).
    #[must_use]
    pub fn visibility_timeout(mut self, timeout: Duration) -> Self {
        self.visibility_timeout = timeout.max(Duration::from_secs(1));
        self
    }

    /// The long-poll wait when a receive names none (default 0).
    #[must_use]
    pub fn polling_wait(mut self, wait: Duration) -> Self {
        self.polling_wait = wait.min(crate::client::MAX_WAIT);
        self
    }

    /// The largest body accepted (default 64 KiB).
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// The delay of a message that names none (default 0).
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Counts of a queue's messages, for test assertions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Visible now.
    pub visible: usize,
    /// Received and hidden (in flight).
    pub in_flight: usize,
    /// Hidden by a send delay, never received.
    pub delayed: usize,
    /// Deleted since the queue was created.
    pub deleted: u64,
}

struct Stored {
    id: String,
    body: String,
    md5: String,
    priority: u32,
    enqueue_ms: u64,
    first_dequeue_ms: u64,
    dequeue_count: u32,
    visible_at: Instant,
    handle: Option<String>,
}

#[derive(Default)]
struct Messages {
    /// By sequence number: the order they were sent.
    by_seq: BTreeMap<u64, Stored>,
    /// The latest handle of each in-flight message.
    handles: HashMap<String, u64>,
    next_seq: u64,
    deleted: u64,
}

pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) config: QueueConfig,
    created_ms: u64,
    instance: u64,
    messages: Mutex<Messages>,
    /// Woken on every send and whenever a message may have become visible.
    arrived: Notify,
}

pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// Epoch milliseconds at a tokio instant (which may be paused in tests).
fn epoch_ms_at(at: Instant) -> u64 {
    let now = Instant::now();
    let base = epoch_ms();
    if at >= now {
        base + (at - now).as_millis() as u64
    } else {
        base.saturating_sub((now - at).as_millis() as u64)
    }
}

fn error(status: u16, code: ErrorCode, message: &str) -> ServiceError {
    ServiceError::new(status, code, message)
}

impl Queue {
    pub(crate) fn new(name: &str, config: QueueConfig) -> Arc<Self> {
        Arc::new(Queue {
            name: name.to_owned(),
            config,
            created_ms: epoch_ms(),
            instance: rand::rng().random(),
            messages: Mutex::new(Messages::default()),
            arrived: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Messages> {
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new receipt handle. It always holds `+`, `/` and `=`, as real
    /// handles often do, so every client call exercises the escaping.
    fn new_handle(seq: u64) -> String {
        let mut raw = vec![0xFB, 0xFF, 0xBF];
        raw.extend_from_slice(&seq.to_be_bytes());
        let mut random = [0u8; 11];
        rand::rng().fill(&mut random);
        raw.extend_from_slice(&random);
        format!("1-{}", STANDARD.encode(raw))
    }

    pub(crate) fn send(
        &self,
        body: String,
        delay: Option<u64>,
        priority: Option<u32>,
    ) -> Result<(String, String), ServiceError> {
        if body.len() > self.config.max_message_size {
            return Err(error(
                400,
                ErrorCode::InvalidArgument,
                &format!(
                    "The value of MessageBody should between 1 and {} bytes.",
                    self.config.max_message_size
                ),
            ));
        }
        let priority = priority.unwrap_or(8);
        if !(1..=16).contains(&priority) {
            return Err(error(
                400,
                ErrorCode::InvalidArgument,
                "The value of Priority should between 1 and 16.",
            ));
        }
        let delay = delay.unwrap_or(self.config.delay.as_secs());
        if delay > MAX_DELAY_SECS {
            return Err(error(
                400,
                ErrorCode::InvalidArgument,
                "The value of DelaySeconds should between 0 and 604800 seconds.",
            ));
        }
        let md5 = signature::message_md5(body.as_bytes());
        let now_ms = epoch_ms();
        let id = {
            let mut m = self.lock();
            let seq = m.next_seq;
            m.next_seq += 1;
            let id = format!("{:016X}-1-{:X}-{:08X}", self.instance, now_ms, seq);
            m.by_seq.insert(
                seq,
                Stored {
                    id: id.clone(),
                    body,
                    md5: md5.clone(),
                    priority,
                    enqueue_ms: now_ms,
                    first_dequeue_ms: 0,
                    dequeue_count: 0,
                    visible_at: Instant::now() + Duration::from_secs(delay),
                    handle: None,
                },
            );
            id
        };
        self.arrived.notify_waiters();
        Ok((id, md5))
    }

    /// Take up to `max` visible messages now: lowest priority number first,
    /// then the order they were sent.
    fn take_visible(&self, max: usize) -> (Vec<ReceivedMessage>, Option<Instant>) {
        let now = Instant::now();
        let mut m = self.lock();
        let mut ready: Vec<(u32, u64)> = m
            .by_seq
            .iter()
            .filter(|(_, s)| s.visible_at <= now)
            .map(|(seq, s)| (s.priority, *seq))
            .collect();
        ready.sort_unstable();
        ready.truncate(max);
        let visible_at = now + self.config.visibility_timeout;
        let now_ms = epoch_ms();
        let mut out = Vec::with_capacity(ready.len());
        for (_, seq) in ready {
            let handle = Queue::new_handle(seq);
            let Messages {
                by_seq, handles, ..
            } = &mut *m;
            let Some(s) = by_seq.get_mut(&seq) else {
                continue;
            };
            if let Some(old) = s.handle.replace(handle.clone()) {
                handles.remove(&old);
            }
            handles.insert(handle.clone(), seq);
            s.dequeue_count += 1;
            if s.first_dequeue_ms == 0 {
                s.first_dequeue_ms = now_ms;
            }
            s.visible_at = visible_at;
            out.push(ReceivedMessage {
                message_id: s.id.clone(),
                receipt_handle: handle,
                body: s.body.clone(),
                body_md5: s.md5.clone(),
                enqueue_time: s.enqueue_ms,
                next_visible_time: epoch_ms_at(visible_at),
                first_dequeue_time: s.first_dequeue_ms,
                dequeue_count: s.dequeue_count,
                priority: s.priority,
            });
        }
        let next_visible = m
            .by_seq
            .values()
            .map(|s| s.visible_at)
            .filter(|at| *at > now)
            .min();
        (out, next_visible)
    }

    /// Receive up to `max` messages, waiting up to `wait` for the first.
    pub(crate) async fn receive(&self, max: usize, wait: Duration) -> Vec<ReceivedMessage> {
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let (got, next_visible) = self.take_visible(max);
            if !got.is_empty() || Instant::now() >= deadline {
                return got;
            }
            let wake = next_visible.map_or(deadline, |at| at.min(deadline));
            tokio::select! {
                () = arrived => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// The sequence number of the in-flight message whose latest handle is
    /// `handle`.
    fn in_flight(m: &Messages, handle: &str, now: Instant) -> Option<u64> {
        let seq = *m.handles.get(handle)?;
        let s = m.by_seq.get(&seq)?;
        (s.handle.as_deref() == Some(handle) && s.visible_at > now).then_some(seq)
    }

    pub(crate) fn delete(&self, handle: &str) -> Result<(), ServiceError> {
        let now = Instant::now();
        let mut m = self.lock();
        let Some(seq) = Queue::in_flight(&m, handle, now) else {
            return Err(error(
                400,
                ErrorCode::ReceiptHandleError,
                "The receipt handle you provided is not valid.",
            ));
        };
        m.handles.remove(handle);
        m.by_seq.remove(&seq);
        m.deleted += 1;
        Ok(())
    }

    pub(crate) fn change_visibility(
        &self,
        handle: &str,
        timeout_secs: u64,
    ) -> Result<(String, u64), ServiceError> {
        if !crate::client::VISIBILITY_RANGE_SECS.contains(&timeout_secs) {
            return Err(error(
                400,
                ErrorCode::InvalidArgument,
                "The value of VisibilityTimeout should between 1 and 43200 seconds.",
            ));
        }
        let now = Instant::now();
        let handle_out;
        let visible_at = now + Duration::from_secs(timeout_secs);
        {
            let mut m = self.lock();
            let Some(seq) = Queue::in_flight(&m, handle, now) else {
                return Err(error(
                    404,
                    ErrorCode::MessageNotExist,
                    "Message not exist or is visible again.",
                ));
            };
            handle_out = Queue::new_handle(seq);
            m.handles.remove(handle);
            m.handles.insert(handle_out.clone(), seq);
            if let Some(s) = m.by_seq.get_mut(&seq) {
                s.handle = Some(handle_out.clone());
                s.visible_at = visible_at;
            }
        }
        // A shorter timeout may make a message visible before a waiting
        // poll's next wake-up.
        self.arrived.notify_waiters();
        Ok((handle_out, epoch_ms_at(visible_at)))
    }

    pub(crate) fn stats(&self) -> QueueStats {
        let now = Instant::now();
        let m = self.lock();
        let mut stats = QueueStats {
            deleted: m.deleted,
            ..QueueStats::default()
        };
        for s in m.by_seq.values() {
            if s.visible_at <= now {
                stats.visible += 1;
            } else if s.dequeue_count > 0 {
                stats.in_flight += 1;
            } else {
                stats.delayed += 1;
            }
        }
        stats
    }

    pub(crate) fn created_ms(&self) -> u64 {
        self.created_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_carry_characters_that_need_escaping() {
        let h = Queue::new_handle(7);
        assert!(
            h.contains('+') && h.contains('/') && h.ends_with('='),
            "{h}"
        );
        assert_ne!(Queue::new_handle(7), h, "handles are random");
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_comes_back_after_its_visibility_timeout_with_a_new_handle() {
        let q = Queue::new(
            "q",
            QueueConfig::default().visibility_timeout(Duration::from_secs(5)),
        );
        q.send("{}".into(), None, None).expect("send");
        let first = q.receive(16, Duration::ZERO).await;
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].dequeue_count, 1);
        assert!(
            q.receive(16, Duration::ZERO).await.is_empty(),
            "hidden while in flight"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        let second = q.receive(16, Duration::ZERO).await;
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].dequeue_count, 2);
        assert_eq!(second[0].message_id, first[0].message_id);
        assert_ne!(second[0].receipt_handle, first[0].receipt_handle);
        assert!(
            q.delete(&first[0].receipt_handle).is_err(),
            "the old handle is dead"
        );
        assert!(q.delete(&second[0].receipt_handle).is_ok());
        assert_eq!(q.stats().deleted, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_wakes_when_a_hidden_message_becomes_visible() {
        let q = Queue::new(
            "q",
            QueueConfig::default().visibility_timeout(Duration::from_secs(3)),
        );
        q.send("{}".into(), None, None).expect("send");
        assert_eq!(q.receive(1, Duration::ZERO).await.len(), 1);
        let started = Instant::now();
        let again = q.receive(1, Duration::from_secs(20)).await;
        assert_eq!(again.len(), 1);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_long_poll_ends_at_its_wait() {
        let q = Queue::new("q", QueueConfig::default());
        let started = Instant::now();
        assert!(q.receive(16, Duration::from_secs(7)).await.is_empty());
        assert_eq!(started.elapsed(), Duration::from_secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn visibility_change_issues_a_new_handle_and_moves_the_deadline() {
        let q = Queue::new(
            "q",
            QueueConfig::default().visibility_timeout(Duration::from_secs(5)),
        );
        q.send("{}".into(), None, None).expect("send");
        let m = q.receive(1, Duration::ZERO).await.remove(0);
        let (h2, _) = q.change_visibility(&m.receipt_handle, 60).expect("change");
        assert_ne!(h2, m.receipt_handle);
        let err = q
            .change_visibility(&m.receipt_handle, 60)
            .expect_err("old handle");
        assert_eq!(err.code(), &ErrorCode::MessageNotExist);
        tokio::time::advance(Duration::from_secs(30)).await;
        assert!(
            q.receive(1, Duration::ZERO).await.is_empty(),
            "extended past the original 5 s"
        );
        assert!(q.change_visibility(&h2, 0).is_err(), "0 s is out of range");
        q.delete(&h2).expect("latest handle deletes");
    }

    #[tokio::test(start_paused = true)]
    async fn order_is_priority_then_send_order_and_delays_hide_messages() {
        let q = Queue::new("q", QueueConfig::default());
        q.send("a".into(), None, Some(8)).expect("send");
        q.send("b".into(), None, Some(8)).expect("send");
        q.send("urgent".into(), None, Some(1)).expect("send");
        q.send("later".into(), Some(10), None).expect("send");
        let got: Vec<String> = q
            .receive(16, Duration::ZERO)
            .await
            .into_iter()
            .map(|m| m.body)
            .collect();
        assert_eq!(got, ["urgent", "a", "b"]);
        assert_eq!(
            q.stats(),
            QueueStats {
                visible: 0,
                in_flight: 3,
                delayed: 1,
                deleted: 0
            }
        );
        assert!(
            q.send("x".repeat(DEFAULT_MAX_MESSAGE_SIZE + 1), None, None)
                .is_err()
        );
        assert!(q.send("x".into(), None, Some(17)).is_err());
    }
}
