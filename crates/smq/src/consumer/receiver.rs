//! One receiver: long-poll a batch, record each message through the intake
//! (keeping it hidden while that takes long), delete what is settled, back
//! off when SMQ or the intake is unwell.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::stats::{ConsumerStats, Counter};
use super::{Settings, error_chain};
use crate::client::{MAX_BATCH, Queue, ReceivedMessage, VisibilityChanged};
use crate::error::{Error, ErrorCode, Result};
use crate::intake::{Intake, IntakeOutcome, Origin};

/// Tries of a delete (or batch delete) that fails with a retryable error.
/// A delete that fails for good only costs a redelivery, which dedupe
/// absorbs; three tries ride out a blip without holding the receiver long.
const DELETE_ATTEMPTS: u32 = 3;

/// What every receiver of one consumer shares.
pub(crate) struct Shared<I> {
    pub(crate) queue: Queue,
    pub(crate) intake: Arc<I>,
    pub(crate) settings: Settings,
    pub(crate) stats: Arc<ConsumerStats>,
}

impl<I> Shared<I> {
    fn queue_name(&self) -> &str {
        self.queue.name()
    }
}

/// Receive until `stop` turns true. A long poll or a backoff in progress is
/// abandoned at once; a batch being recorded is finished first.
pub(crate) async fn receive_loop<I: Intake>(
    shared: Arc<Shared<I>>,
    mut stop: watch::Receiver<bool>,
    receiver: usize,
) {
    let settings = &shared.settings;
    let mut backoff = Backoff::new(settings.backoff_base, settings.backoff_max);
    loop {
        if *stop.borrow() {
            return;
        }
        let started = Instant::now();
        let polled = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => return,
            polled = shared.queue.batch_receive(settings.batch_size, Some(settings.wait)) => polled,
        };
        let pause = match polled {
            Ok(messages) if messages.is_empty() => {
                // A normal empty answer comes when the wait ends; one that
                // comes much sooner means SMQ has too many long polls open.
                if started.elapsed() < settings.wait / 2 {
                    tracing::debug!(
                        queue = shared.queue_name(),
                        receiver,
                        "SMQ answered an empty receive at once (too many long polls); backing off"
                    );
                    Some(backoff.next_delay())
                } else {
                    recovered(&shared, &mut backoff, receiver);
                    None
                }
            }
            Ok(messages) => {
                // An unavailable intake counts as a failure too, so a
                // journal that stays down is polled less and less often.
                if process_batch(&shared, messages).await {
                    Some(backoff.next_delay())
                } else {
                    recovered(&shared, &mut backoff, receiver);
                    None
                }
            }
            Err(e) => {
                shared.stats.add(Counter::ReceiveErrors, 1);
                receive_failed(&shared, &e, backoff.failures(), receiver);
                Some(backoff.next_delay())
            }
        };
        if let Some(pause) = pause {
            shared.stats.add(Counter::Backoffs, 1);
            tokio::select! {
                biased;
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

fn recovered<I>(shared: &Shared<I>, backoff: &mut Backoff, receiver: usize) {
    if backoff.failures() > 0 {
        tracing::info!(
            queue = shared.queue_name(),
            receiver,
            failures = backoff.failures(),
            "SMQ consumer works again"
        );
    }
    backoff.reset();
}

fn receive_failed<I>(shared: &Shared<I>, e: &Error, failures_before: u32, receiver: usize) {
    let queue = shared.queue_name();
    if e.code().is_some_and(ErrorCode::is_configuration) {
        // The queue was deleted or the key lost its rights while running:
        // keep trying at the backoff's pace so a fix needs no restart.
        tracing::error!(queue, receiver, error = %error_chain(e), "SMQ refuses to let this consumer receive");
    } else if failures_before == 0 {
        tracing::warn!(queue, receiver, error = %error_chain(e), "SMQ receive failed; backing off");
    } else {
        tracing::debug!(queue, receiver, failures = failures_before + 1, error = %error_chain(e), "SMQ receive failed again");
    }
}

/// A received message as the log and the delete need it.
#[derive(Debug, Clone)]
struct Meta {
    message_id: String,
    dequeue_count: u32,
    /// The handle as received; the message's task may replace it.
    handle: String,
}

/// What a message's task decided.
enum Verdict {
    Recorded,
    Poison(String),
    Unavailable(String),
}

/// A message's task's result: its verdict and its latest receipt handle.
struct Settled {
    meta: Meta,
    handle: String,
    verdict: Verdict,
}

/// Why a message is to be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposal {
    Recorded,
    Poison,
}

/// A message ready to delete.
struct Ready {
    meta: Meta,
    handle: String,
    disposal: Disposal,
}

/// Record every message of a batch concurrently and delete each as soon as
/// it is settled (several at once with BatchDeleteMessage when they finish
/// together). Returns whether the intake was unavailable for any, so the
/// receiver backs off.
async fn process_batch<I: Intake>(shared: &Arc<Shared<I>>, messages: Vec<ReceivedMessage>) -> bool {
    let count = messages.len() as u64;
    shared.stats.add(Counter::Received, count);
    shared.stats.in_flight_add(count);
    let mut tasks = JoinSet::new();
    let mut metas: HashMap<Id, Meta> = HashMap::with_capacity(messages.len());
    for message in messages {
        let meta = Meta {
            message_id: message.message_id.clone(),
            dequeue_count: message.dequeue_count,
            handle: message.receipt_handle.clone(),
        };
        let handle = tasks.spawn(settle_message(shared.clone(), message));
        metas.insert(handle.id(), meta);
    }
    let mut unavailable = false;
    while let Some(joined) = tasks.join_next_with_id().await {
        let mut ready = Vec::new();
        unavailable |= judge(shared, &mut metas, joined, &mut ready);
        while let Some(joined) = tasks.try_join_next_with_id() {
            unavailable |= judge(shared, &mut metas, joined, &mut ready);
        }
        if !ready.is_empty() {
            delete(shared, ready).await;
        }
    }
    unavailable
}

/// Count and log one settled message; queue it for deletion if it is
/// recorded, or poison at its last allowed delivery. Returns whether the
/// intake was unavailable.
fn judge<I>(
    shared: &Shared<I>,
    metas: &mut HashMap<Id, Meta>,
    joined: std::result::Result<(Id, Settled), JoinError>,
    ready: &mut Vec<Ready>,
) -> bool {
    let settled = match joined {
        Ok((id, settled)) => {
            metas.remove(&id);
            settled
        }
        Err(e) => {
            let Some(meta) = metas.remove(&e.id()) else {
                return false;
            };
            let why = if e.is_panic() {
                "the intake panicked"
            } else {
                "the record was cancelled"
            };
            Settled {
                handle: meta.handle.clone(),
                meta,
                verdict: Verdict::Unavailable(why.to_owned()),
            }
        }
    };
    let stats = &shared.stats;
    let queue = shared.queue_name();
    let Settled {
        meta,
        handle,
        verdict,
    } = settled;
    match verdict {
        Verdict::Recorded => {
            stats.add(Counter::Recorded, 1);
            ready.push(Ready {
                meta,
                handle,
                disposal: Disposal::Recorded,
            });
            false
        }
        Verdict::Poison(reason) => {
            stats.add(Counter::Poison, 1);
            let limit = shared.settings.poison_dequeue_limit;
            if meta.dequeue_count >= limit {
                tracing::warn!(
                    queue,
                    message_id = %meta.message_id,
                    dequeue_count = meta.dequeue_count,
                    limit,
                    reason = %reason,
                    "poison SMQ message reached its delivery limit; deleting it"
                );
                ready.push(Ready {
                    meta,
                    handle,
                    disposal: Disposal::Poison,
                });
            } else {
                tracing::warn!(
                    queue,
                    message_id = %meta.message_id,
                    dequeue_count = meta.dequeue_count,
                    limit,
                    reason = %reason,
                    "poison SMQ message refused; SMQ will deliver it again"
                );
                stats.in_flight_sub(1);
            }
            false
        }
        Verdict::Unavailable(reason) => {
            stats.add(Counter::Unavailable, 1);
            tracing::warn!(
                queue,
                message_id = %meta.message_id,
                dequeue_count = meta.dequeue_count,
                reason = %reason,
                "the journal could not take an SMQ message; it stays on the queue"
            );
            stats.in_flight_sub(1);
            true
        }
    }
}

/// Decode one message and record it, keeping it hidden meanwhile.
async fn settle_message<I: Intake>(shared: Arc<Shared<I>>, message: ReceivedMessage) -> Settled {
    let meta = Meta {
        message_id: message.message_id.clone(),
        dequeue_count: message.dequeue_count,
        handle: message.receipt_handle.clone(),
    };
    let queue = shared.queue_name();
    let decoded = match message.decode() {
        Ok(decoded) => decoded,
        Err(e) => {
            return Settled {
                handle: message.receipt_handle,
                meta,
                verdict: Verdict::Poison(format!("the body cannot be decoded: {e}")),
            };
        }
    };
    let shape = decoded.shape;
    if shared.stats.first_sighting(shape) {
        tracing::info!(queue, %shape, message_id = %meta.message_id, "first SMQ message in this body shape");
    }
    tracing::debug!(
        queue,
        %shape,
        message_id = %meta.message_id,
        dequeue_count = meta.dequeue_count,
        "SMQ message received"
    );
    let origin = Origin::queue(queue, message.message_id, message.dequeue_count, shape);
    let record = shared.intake.record(Bytes::from(decoded.json), origin);
    let (outcome, handle) = keep_hidden(&shared, &meta, record, message.receipt_handle).await;
    let verdict = match outcome {
        IntakeOutcome::Recorded => Verdict::Recorded,
        IntakeOutcome::Refused { reason } => Verdict::Poison(reason),
        IntakeOutcome::Unavailable { reason } => Verdict::Unavailable(reason),
    };
    Settled {
        meta,
        handle,
        verdict,
    }
}

type Extension = Pin<Box<dyn Future<Output = Result<VisibilityChanged>> + Send>>;

/// Drive `record` to its end. If it takes longer than the first extension
/// threshold, extend the message's visibility, and again periodically, so
/// no other receiver gets it meanwhile. Returns the outcome and the
/// message's latest receipt handle (each extension issues a new one).
async fn keep_hidden<I, F>(
    shared: &Shared<I>,
    meta: &Meta,
    record: F,
    mut handle: String,
) -> (IntakeOutcome, String)
where
    F: Future<Output = IntakeOutcome>,
{
    let settings = &shared.settings;
    tokio::pin!(record);
    let mut next = Instant::now() + settings.first_extension;
    let mut extending: Option<Extension> = None;
    let mut gave_up = false;
    loop {
        tokio::select! {
            outcome = &mut record => {
                // An extension already sent may have replaced the handle.
                if let Some(extension) = extending.take() {
                    if let Ok(changed) = extension.await {
                        handle = changed.receipt_handle;
                        shared.stats.add(Counter::VisibilityExtensions, 1);
                    }
                }
                return (outcome, handle);
            }
            changed = async {
                match extending.as_mut() {
                    Some(extension) => extension.as_mut().await,
                    None => std::future::pending().await,
                }
            } => {
                extending = None;
                match changed {
                    Ok(changed) => {
                        handle = changed.receipt_handle;
                        shared.stats.add(Counter::VisibilityExtensions, 1);
                        tracing::debug!(
                            queue = shared.queue_name(),
                            message_id = %meta.message_id,
                            "SMQ message kept hidden while its record is in progress"
                        );
                        next = Instant::now() + settings.extend_every;
                    }
                    Err(e) if e.is_retryable() => {
                        next = Instant::now() + settings.backoff_base;
                    }
                    Err(e) => {
                        tracing::warn!(
                            queue = shared.queue_name(),
                            message_id = %meta.message_id,
                            error = %error_chain(&e),
                            "cannot keep a slow SMQ message hidden; it may be delivered again (dedupe makes that harmless)"
                        );
                        gave_up = true;
                    }
                }
            }
            () = tokio::time::sleep_until(next), if extending.is_none() && !gave_up => {
                let queue = shared.queue.clone();
                let current = handle.clone();
                let period = settings.visibility_extension;
                extending = Some(Box::pin(async move {
                    queue.change_visibility(&current, period).await
                }));
            }
        }
    }
}

/// Delete settled messages, in batches of up to 16, retrying a call that
/// fails as a whole with a retryable error.
async fn delete<I>(shared: &Shared<I>, ready: Vec<Ready>) {
    let mut ready = ready;
    while !ready.is_empty() {
        let rest = ready.split_off(ready.len().min(MAX_BATCH));
        delete_chunk(shared, ready).await;
        ready = rest;
    }
}

async fn delete_chunk<I>(shared: &Shared<I>, chunk: Vec<Ready>) {
    let settings = &shared.settings;
    let mut backoff = Backoff::new(settings.backoff_base, settings.backoff_max);
    let handles: Vec<&str> = chunk.iter().map(|r| r.handle.as_str()).collect();
    let mut attempt = 1;
    // Handle -> why it could not be deleted.
    let failures: HashMap<String, String> = loop {
        let result = if let [one] = handles.as_slice() {
            match shared.queue.delete(one).await {
                Ok(()) => Ok(HashMap::new()),
                Err(e) if e.is_retryable() => Err(e),
                Err(e) => Ok(HashMap::from([((*one).to_owned(), error_chain(&e))])),
            }
        } else {
            shared.queue.batch_delete(&handles).await.map(|failed| {
                failed
                    .into_iter()
                    .map(|f| (f.receipt_handle, format!("{}: {}", f.code, f.message)))
                    .collect()
            })
        };
        match result {
            Ok(failures) => break failures,
            Err(e) if e.is_retryable() && attempt < DELETE_ATTEMPTS => {
                tracing::debug!(
                    queue = shared.queue_name(),
                    attempt,
                    error = %error_chain(&e),
                    "SMQ delete failed; trying again"
                );
                attempt += 1;
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) => {
                let why = error_chain(&e);
                break chunk
                    .iter()
                    .map(|r| (r.handle.clone(), why.clone()))
                    .collect();
            }
        }
    };
    let stats = &shared.stats;
    for ready in &chunk {
        match failures.get(&ready.handle) {
            None => {
                stats.add(Counter::Deleted, 1);
                if ready.disposal == Disposal::Poison {
                    stats.add(Counter::PoisonDeleted, 1);
                }
            }
            Some(why) => {
                stats.add(Counter::DeleteFailures, 1);
                tracing::warn!(
                    queue = shared.queue_name(),
                    message_id = %ready.meta.message_id,
                    dequeue_count = ready.meta.dequeue_count,
                    error = %why,
                    "cannot delete an SMQ message; it will be delivered again (dedupe makes that harmless)"
                );
            }
        }
    }
    stats.in_flight_sub(chunk.len() as u64);
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::client::Client;
    use crate::credentials::Credentials;

    /// Counts its calls; records everything.
    #[derive(Default)]
    struct Counting(Mutex<u32>);

    impl Intake for Counting {
        async fn record(&self, _: Bytes, _: Origin) -> IntakeOutcome {
            *self.0.lock().expect("lock") += 1;
            IntakeOutcome::Recorded
        }
    }

    fn shared(limit: u32) -> Arc<Shared<Counting>> {
        // Nothing listens there: these tests make no SMQ call.
        let queue = Client::new("http://127.0.0.1:9", Credentials::new("id", "secret"))
            .expect("client")
            .queue("q");
        Arc::new(Shared {
            queue,
            intake: Arc::new(Counting::default()),
            settings: Settings {
                batch_size: 16,
                wait: Duration::from_secs(30),
                first_extension: Duration::from_secs(10),
                extend_every: Duration::from_secs(10),
                visibility_extension: Duration::from_secs(30),
                poison_dequeue_limit: limit,
                backoff_base: Duration::from_millis(100),
                backoff_max: Duration::from_secs(1),
            },
            stats: Arc::new(ConsumerStats::default()),
        })
    }

    #[tokio::test]
    async fn a_body_whose_md5_does_not_match_is_poison_and_never_recorded() {
        let shared = shared(3);
        let mut message = ReceivedMessage::new("m-1", "h-1", r#"{"RequestType":"Create"}"#);
        message.body_md5 = "0123456789ABCDEF0123456789ABCDEF".into();
        let settled = settle_message(shared.clone(), message).await;
        let Verdict::Poison(reason) = settled.verdict else {
            panic!("not poison");
        };
        assert!(reason.contains("MD5"), "{reason}");
        assert_eq!(*shared.intake.0.lock().expect("lock"), 0);
    }

    #[tokio::test]
    async fn a_poison_message_is_deleted_only_at_its_limit() {
        let shared = shared(3);
        let settle = |dequeue_count| Settled {
            meta: Meta {
                message_id: "m".into(),
                dequeue_count,
                handle: "h".into(),
            },
            handle: "h".into(),
            verdict: Verdict::Poison("not a ROS request".into()),
        };
        let mut metas = HashMap::new();
        let mut tasks = JoinSet::new();
        for count in [2, 3, 4] {
            tasks.spawn(std::future::ready(settle(count)));
        }
        let mut ready = Vec::new();
        while let Some(joined) = tasks.join_next_with_id().await {
            assert!(!judge(&shared, &mut metas, joined, &mut ready));
        }
        let mut counts: Vec<u32> = ready.iter().map(|r| r.meta.dequeue_count).collect();
        counts.sort_unstable();
        assert_eq!(counts, [3, 4]);
        assert!(ready.iter().all(|r| r.disposal == Disposal::Poison));
        assert_eq!(shared.stats.poison(), 3);
    }

    #[tokio::test]
    async fn a_quick_record_makes_no_visibility_call() {
        let shared = shared(3);
        let meta = Meta {
            message_id: "m".into(),
            dequeue_count: 1,
            handle: "h".into(),
        };
        let (outcome, handle) = keep_hidden(
            &shared,
            &meta,
            std::future::ready(IntakeOutcome::Recorded),
            "h".into(),
        )
        .await;
        assert_eq!(outcome, IntakeOutcome::Recorded);
        assert_eq!(handle, "h");
        assert_eq!(shared.stats.visibility_extensions(), 0);
    }
}
