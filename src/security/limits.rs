//! Limits that keep hostile or broken clients from crashing the process or
//! starving others: nesting depth, header size, read times, connections and
//! request bodies read at once per client address.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

use crate::sync::lock;

/// Deepest JSON nesting accepted. ROS property maps are a few levels deep;
/// 64 leaves room for any real template and stays well below serde_json's
/// own recursion limit (128), so the refusal is ours and says why.
pub const DEFAULT_JSON_DEPTH: usize = 64;

/// Time a client gets to send its request headers. ROS sends them at once;
/// 30 s tolerates slow links while cutting off slowloris-style clients.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a client gets to send the whole body once the headers are in. A
/// 1 MiB body takes well under a second on any link ROS uses; 15 s leaves
/// room for the slow ones and still frees the connection quickly.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Largest request head (request line and headers). Function Compute allows
/// 8 KiB of headers and 4 KiB of path; 16 KiB covers both.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// Hyper refuses a read buffer smaller than this.
const HYPER_MIN_BUF: usize = 8192;

/// Open connections at once; more are closed as soon as they are accepted.
/// ROS sends bursts from a few egress addresses (behind a proxy, from one):
/// a stack group's async requests, and sync requests that each hold their
/// connection for up to ROS's 10 s wait. 1024 takes 150 sync and 300 async
/// requests at once with room for a second burst, kept-alive connections
/// and probes. The process needs a descriptor limit above this plus its
/// outgoing callbacks (container runtimes give 1048576; under systemd set
/// `LimitNOFILE`); see `docs/security.md`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Requests from one client address whose body is being read at once.
///
/// Only intake counts: from the token check to the body read and checked
/// (depth, signature). After it, a request is ROS's, and the runtime's own
/// limits (`--max-concurrency`, `--max-queue`) govern it and answer it
/// FAILED "overloaded" when they must. A sync request waiting for its
/// handler therefore holds no slot. ROS sends a body at once and a proxy
/// forwards it buffered, so a slot is held for milliseconds; what holds
/// slots for long is a client that trickles its body (up to the body read
/// timeout), and 64 of those from one address, at up to 1 MiB each, is all
/// one address can make the server buffer.
pub const DEFAULT_MAX_REQUESTS_PER_IP: usize = 64;

/// How long a request waits for one of its address's intake slots before
/// it is refused with 503 and `Retry-After`. A burst's slots free within
/// milliseconds, so this only runs out when slow bodies hold every slot;
/// it stays well inside ROS's 10 s sync wait.
pub const PER_IP_SLOT_WAIT: Duration = Duration::from_secs(5);

/// The `Retry-After` (seconds) of a refusal for load before the body was read.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Whether `body` nests arrays and objects deeper than `max`.
///
/// A body with no more opening brackets than `max` cannot be too deep and
/// is not scanned. Otherwise: one pass over the bytes, aware of strings and
/// escapes, that stops as soon as the limit is crossed. Inside a string it jumps to the next quote or
/// backslash with `memchr` (most of a request's bytes are in strings). It
/// does not validate JSON: the parser does that afterwards.
pub fn json_too_deep(body: &[u8], max: usize) -> bool {
    // Nesting never goes deeper than the number of opening brackets, and
    // `memchr` finds those a vector at a time: a typical request has a
    // dozen, far below any useful limit, and skips the scan.
    if memchr::memchr2_iter(b'{', b'[', body).nth(max).is_none() {
        return false;
    }
    let mut depth = 0usize;
    let mut at = 0;
    while at < body.len() {
        match body[at] {
            b'"' => {
                // Skip the string: find its closing quote, stepping over escapes.
                at += 1;
                loop {
                    let Some(found) = memchr::memchr2(b'"', b'\\', &body[at..]) else {
                        return false;
                    };
                    at += found;
                    if body[at] == b'"' {
                        break;
                    }
                    at += 2;
                    if at >= body.len() {
                        return false;
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        at += 1;
    }
    false
}

/// Caps open connections.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    slots: Arc<Semaphore>,
}

impl ConnectionLimit {
    /// A cap of `max` connections (at least one).
    pub fn new(max: usize) -> Self {
        ConnectionLimit {
            slots: Arc::new(Semaphore::new(max.clamp(1, Semaphore::MAX_PERMITS))),
        }
    }

    /// A slot for one more connection, held until the permit is dropped;
    /// `None` when all are taken.
    pub fn try_enter(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }
}

/// Caps the requests per client address whose body is being read (see
/// [`DEFAULT_MAX_REQUESTS_PER_IP`]).
#[derive(Debug)]
pub struct PerIpLimit {
    max: usize,
    active: Mutex<foldhash::HashMap<IpAddr, usize>>,
    /// Woken when a full address frees a slot.
    freed: Notify,
}

/// One request's slot; released on drop. It borrows its limit rather than
/// sharing it: a request never outlives the server that admitted it, and
/// no reference count moves per request.
#[derive(Debug)]
pub struct IpSlot<'a> {
    ip: IpAddr,
    limit: &'a PerIpLimit,
}

impl PerIpLimit {
    /// At most `max` requests at once per address (at least one).
    pub fn new(max: usize) -> Self {
        PerIpLimit {
            max: max.max(1),
            active: Mutex::new(foldhash::HashMap::default()),
            freed: Notify::new(),
        }
    }

    /// A slot for a request from `ip`; `None` when it has `max` in progress.
    /// The map only holds addresses with requests in progress, so its size
    /// is bounded by the connection limit.
    pub fn try_enter(&self, ip: IpAddr) -> Option<IpSlot<'_>> {
        let ip = super::callback_guard::canonical_ip(ip);
        let mut active = lock(&self.active);
        let count = active.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot { ip, limit: self })
    }

    /// A slot for a request from `ip`, waiting up to `wait` for one to be
    /// freed when the address has `max` in progress; `None` if none was.
    pub async fn enter(&self, ip: IpAddr, wait: Duration) -> Option<IpSlot<'_>> {
        if let Some(slot) = self.try_enter(ip) {
            return Some(slot);
        }
        let until = tokio::time::Instant::now() + wait;
        loop {
            // Registered before the check, so a slot freed between the
            // check and the wait still wakes this request.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = self.try_enter(ip) {
                return Some(slot);
            }
            if tokio::time::timeout_at(until, freed).await.is_err() {
                return None;
            }
        }
    }

    /// Requests in progress from `ip`.
    pub fn in_progress(&self, ip: IpAddr) -> usize {
        lock(&self.active)
            .get(&super::callback_guard::canonical_ip(ip))
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for IpSlot<'_> {
    fn drop(&mut self) {
        let limit = self.limit;
        let was_full = {
            let mut active = lock(&limit.active);
            let Some(count) = active.get_mut(&self.ip) else {
                return;
            };
            let was_full = *count >= limit.max;
            *count = count.saturating_sub(1);
            if *count == 0 {
                active.remove(&self.ip);
            }
            was_full
        };
        // Only a full address can have requests waiting for a slot.
        if was_full {
            limit.freed.notify_waiters();
        }
    }
}

/// A connection that must deliver its first byte within a time limit.
///
/// Hyper's header read timeout starts only once hyper is reading a request
/// head, and the HTTP/1-or-2 detection before that has no timeout at all: a
/// client that connects and sends nothing would hold a connection slot
/// forever. This wrapper fails the first read with `TimedOut` when no byte
/// has arrived in time; after the first byte it is a plain pass-through.
#[derive(Debug)]
pub(crate) struct FirstByteDeadline<T> {
    inner: T,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> FirstByteDeadline<T> {
    pub(crate) fn new(inner: T, limit: Duration) -> Self {
        FirstByteDeadline {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match (&polled, this.deadline.as_mut()) {
            (_, None) => {}
            (Poll::Ready(Ok(())), Some(_)) if buf.filled().len() > before => this.deadline = None,
            (Poll::Ready(_), Some(_)) => {}
            (Poll::Pending, Some(deadline)) => {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request bytes within the header read timeout",
                    )));
                }
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Apply the header-size and header-time limits to hyper's connection builder.
pub(crate) fn tune(
    builder: &mut auto::Builder<TokioExecutor>,
    header_read_timeout: Duration,
    max_header_bytes: usize,
) {
    builder
        .http1()
        .header_read_timeout(header_read_timeout)
        .max_buf_size(max_header_bytes.max(HYPER_MIN_BUF));
    builder
        .http2()
        .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_only_structure_outside_strings() {
        assert!(!json_too_deep(br#"{"a":[[1]]}"#, 3));
        assert!(json_too_deep(br#"{"a":[[[1]]]}"#, 3));
        assert!(!json_too_deep(br#"{"a":"[[[[[[\"[[[["}"#, 1));
        assert!(json_too_deep(&b"[".repeat(10_000), 64));
        assert!(!json_too_deep(b"]]]]}}}", 0));
        // Escaped quotes and backslashes do not end a string.
        assert!(!json_too_deep(br#"{"a":"\\\"[[[","b":"\\\\"}"#, 1));
        assert!(json_too_deep(br#"{"a":"\\\\",[[1]]}"#, 2));
        // An unterminated string or escape at the very end.
        assert!(!json_too_deep(br#"{"a":"[[[["#, 1));
        assert!(!json_too_deep(br#"{"a":"\\"#, 1));
    }

    /// The byte-at-a-time scan `json_too_deep` must agree with.
    fn too_deep_reference(body: &[u8], max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &byte in body {
            if in_string {
                if escaped {
                    escaped = false;
                } else if byte == b'\\' {
                    escaped = true;
                } else if byte == b'"' {
                    in_string = false;
                }
                continue;
            }
            match byte {
                b'"' => in_string = true,
                b'[' | b'{' => {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                }
                b']' | b'}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        false
    }

    #[test]
    fn depth_scan_agrees_with_the_byte_by_byte_reference() {
        use rand::{Rng, SeedableRng};
        let alphabet = b"[]{}\"\\a:,";
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..20_000 {
            let len = rng.random_range(0..24);
            let body: Vec<u8> = (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect();
            let max = rng.random_range(0..4);
            assert_eq!(
                json_too_deep(&body, max),
                too_deep_reference(&body, max),
                "{:?} at {max}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn per_ip_slots_are_released() {
        let limit = PerIpLimit::new(2);
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let a = limit.try_enter(ip).expect("first");
        let _b = limit.try_enter(ip).expect("second");
        assert!(limit.try_enter(ip).is_none());
        assert!(limit.try_enter("::1".parse().expect("ip")).is_some());
        drop(a);
        assert!(limit.try_enter(ip).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_over_the_cap_gets_the_next_freed_slot() {
        let limit = std::sync::Arc::new(PerIpLimit::new(1));
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let holder = {
            let limit = std::sync::Arc::clone(&limit);
            tokio::spawn(async move {
                let _slot = limit.try_enter(ip).expect("free");
                let _ = released.await;
            })
        };
        tokio::task::yield_now().await;
        assert_eq!(limit.in_progress(ip), 1);
        let started = tokio::time::Instant::now();
        let waiter = {
            let limit = std::sync::Arc::clone(&limit);
            tokio::spawn(async move {
                let slot = limit.enter(ip, Duration::from_secs(5)).await;
                (slot.is_some(), started.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(!waiter.is_finished(), "waits while the slot is held");
        release.send(()).expect("holder waits");
        holder.await.expect("holder");
        let (entered, waited) = waiter.await.expect("waiter");
        assert!(entered, "the freed slot went to the waiting request");
        assert_eq!(waited, Duration::from_secs(2));
        assert_eq!(limit.in_progress(ip), 0, "and came back when it was done");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_over_the_cap_is_refused_when_no_slot_frees_in_time() {
        let limit = PerIpLimit::new(2);
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let _a = limit.try_enter(ip).expect("first");
        let _b = limit.try_enter(ip).expect("second");
        let started = tokio::time::Instant::now();
        assert!(limit.enter(ip, Duration::from_secs(5)).await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // Another address never waits on this one's slots.
        let other = limit
            .enter("10.0.0.2".parse().expect("ip"), Duration::ZERO)
            .await;
        assert!(other.is_some());
        assert_eq!(limit.in_progress(ip), 2);
    }

    #[test]
    fn connection_slots_are_bounded() {
        let limit = ConnectionLimit::new(1);
        let held = limit.try_enter().expect("one");
        assert!(limit.try_enter().is_none());
        drop(held);
        assert!(limit.try_enter().is_some());
    }
}
