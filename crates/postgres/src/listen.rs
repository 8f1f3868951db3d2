//! LISTEN on the answer channel, so a sync duplicate on one replica wakes
//! when another replica records the answer.
//!
//! One dedicated connection per store (a pooled one would be handed to
//! other work). It reconnects with backoff after a failure; while it is
//! down, waiters poll instead ([`crate::PostgresStore::wait_for_answer`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::scrub;

/// The first and longest wait before listening again after a failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Notifications a slow waiter may fall behind by before it re-reads the
/// database instead ([`broadcast::error::RecvError::Lagged`]).
pub(crate) const CAPACITY: usize = 1024;

/// Keep listening on `channel` (already a quoted identifier), sending each
/// notification's payload (an answered record's encoded key) to `answers`
/// and keeping `listening` true while LISTEN is in force. Runs until aborted.
pub(crate) async fn run(
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    channel: String,
    answers: broadcast::Sender<Arc<str>>,
    listening: Arc<AtomicBool>,
    secret: Option<String>,
) {
    let mut backoff = BACKOFF_FIRST;
    loop {
        match pg.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let forward = answers.clone();
                let mut messages =
                    futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                let drive = tokio::spawn(async move {
                    while let Some(message) = messages.next().await {
                        match message {
                            Ok(AsyncMessage::Notification(note)) => {
                                drop(forward.send(Arc::from(note.payload())));
                            }
                            Ok(_) => {}
                            Err(error) => return Some(error),
                        }
                    }
                    None
                });
                match client.batch_execute(&format!("LISTEN {channel}")).await {
                    Ok(()) => {
                        listening.store(true, Ordering::Release);
                        backoff = BACKOFF_FIRST;
                        tracing::debug!(%channel, "listening for answers");
                        let ended = drive.await;
                        listening.store(false, Ordering::Release);
                        if let Ok(Some(error)) = ended {
                            tracing::warn!(error = %scrub(&error, secret.as_deref()), "the answer listener's connection failed");
                        }
                    }
                    Err(error) => {
                        drive.abort();
                        tracing::warn!(error = %scrub(&error, secret.as_deref()), "LISTEN for answers failed");
                    }
                }
                drop(client);
            }
            Err(error) => {
                tracing::warn!(error = %scrub(&error, secret.as_deref()), "the answer listener cannot connect");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}
