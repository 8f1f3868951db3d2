//! Alibaba Cloud SMQ (formerly MNS) for stackhook: the pieces a provider
//! needs to take ROS custom-resource requests from a queue or a topic.
//!
//! A ROS ServiceToken may name a queue (`acs:mns:REGION:ACCOUNT:queues/NAME`)
//! or a topic (`...:topics/NAME`) instead of a URL. This crate gives:
//!
//! - [`Client`] and [`Queue`]: a thin async client for the queue API
//!   (version 2015-06-06) with the V2 `MNS AccessKeyId:Signature` signature
//!   ([`signature`]), long-poll batch receive, delete, batch delete,
//!   visibility changes, send and attributes; failures are a typed
//!   [`Error`] with [`Error::is_retryable`];
//! - [`message`]: a message body in any shape (raw JSON, base64 JSON, a
//!   topic envelope around either) decoded to its JSON, with the MD5
//!   checked and the shape reported;
//! - [`Consumer`]: the queue consumer. N receivers long-poll batches, hand
//!   each request to an [`Intake`] (the embedding runtime's journal), keep a
//!   slow record's message hidden, delete only what is recorded, delete
//!   poison at a DequeueCount limit, back off with full jitter, and stop
//!   receiving at once on shutdown; counters in [`ConsumerStats`];
//! - [`push`]: topic HTTP push notifications read in the XML, JSON and
//!   SIMPLIFIED formats and their RSA signatures verified, and
//!   [`push::handle`], a push endpoint's whole job (verify, decode, record
//!   through the [`Intake`], the status to answer) without an HTTP server;
//! - [`serve_queue`] and [`serve_push`]: both next to stackhook's `serve`
//!   (`stackhook::server::serve_with`), recording through the runtime's
//!   `Recorder` (which implements [`Intake`]), counters on `/metrics`;
//! - `emulator` (feature `emulator`): a local SMQ queue server with fault
//!   injection, and a topic pusher that signs like SMQ.
//!
//! ```no_run
//! # async fn demo() -> stackhook_smq::Result<()> {
//! use std::time::Duration;
//! use stackhook_smq::{Arn, Client, Credentials};
//!
//! let arn: Arn = "acs:mns:cn-hangzhou:1234567890:queues/ros-requests".parse()?;
//! let client = Client::for_arn(&arn, None, Credentials::new("LTAI...", "secret"))?;
//! let queue = client.queue(arn.name());
//! queue.attributes().await?; // fails fast on QueueNotExist or AccessDenied
//! loop {
//!     for message in queue.batch_receive(16, Some(Duration::from_secs(30))).await? {
//!         let body = message.decode()?;
//!         tracing::info!(message_id = %message.message_id, shape = %body.shape, "request arrived");
//!         // record body.json durably, then:
//!         queue.delete(&message.receipt_handle).await?;
//!     }
//! }
//! # }
//! ```
//!
//! Secrets and signatures are never logged; `Credentials`' `Debug` shows the
//! key id only, and errors never quote a message body.

mod arn;
mod client;
mod consumer;
mod credentials;
mod error;
mod intake;
pub mod message;
mod notification;
pub mod push;
mod serve;
pub mod signature;
mod xml;

#[cfg(feature = "emulator")]
pub mod emulator;

pub use arn::{Arn, ResourceKind};
pub use client::{
    CONNECT_TIMEOUT, Client, DeleteFailure, LONG_POLL_SLACK, MAX_BATCH, MAX_WAIT, OutgoingMessage,
    Queue, QueueAttributes, REQUEST_TIMEOUT, ReceivedMessage, SentMessage, VISIBILITY_RANGE_SECS,
    VisibilityChanged,
};
pub use consumer::{
    Consumer, ConsumerConfig, ConsumerStats, DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_MAX,
    DEFAULT_BATCH_SIZE, DEFAULT_EXTEND_AFTER, DEFAULT_POISON_DEQUEUE_LIMIT, DEFAULT_RECEIVERS,
    DEFAULT_SHUTDOWN_GRACE, DEFAULT_VISIBILITY_EXTENSION, DEFAULT_WAIT, MAX_RECEIVERS,
};
pub use credentials::Credentials;
pub use error::{Error, ErrorCode, Result, ServiceError};
pub use intake::{Intake, IntakeOutcome, Origin, Via};
pub use notification::{Notification, NotifyFormat};
pub use serve::{serve_push, serve_queue};
