//! A thin async client for SMQ's queue API (version 2015-06-06).
//!
//! One [`Client`] per endpoint holds the HTTP connection pool and the
//! credentials; [`Client::queue`] gives a cheap [`Queue`] handle whose
//! methods are the queue actions. Every request is signed afresh (new
//! `Date`), so a retry is just calling the method again.
//!
//! ```no_run
//! # async fn demo() -> stackhook_smq::Result<()> {
//! use std::time::Duration;
//! use stackhook_smq::{Arn, Client, Credentials};
//!
//! let arn: Arn = "acs:mns:cn-hangzhou:1234567890:queues/ros-requests".parse()?;
//! let client = Client::for_arn(&arn, None, Credentials::new("LTAI...", "secret"))?;
//! let queue = client.queue(arn.name());
//! for message in queue.batch_receive(16, Some(Duration::from_secs(30))).await? {
//!     let decoded = message.decode()?;
//!     // ... record decoded.json durably, then:
//!     queue.delete(&message.receipt_handle).await?;
//! }
//! # Ok(())
//! # }
//! ```

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, DATE, HeaderMap, HeaderValue};
use http::{Method, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

use crate::arn::Arn;
use crate::credentials::Credentials;
use crate::error::{Error, ErrorCode, Result, ServiceError};
use crate::signature::{self, CONTENT_MD5, XML_CONTENT_TYPE};
use crate::xml;

/// The longest long poll SMQ allows (`waitseconds` is 0-30).
pub const MAX_WAIT: Duration = Duration::from_secs(30);
/// The most messages one BatchReceiveMessage or BatchDeleteMessage carries.
pub const MAX_BATCH: usize = 16;
/// Added to a long poll's wait to make its client timeout: SMQ holds the
/// request for up to the wait and then needs a moment to answer. Ten seconds
/// rides out a slow network yet notices a dead connection well before the
/// next visibility timeout (30 s by default).
pub const LONG_POLL_SLACK: Duration = Duration::from_secs(10);
/// The timeout of a call that does not wait (delete, visibility, send):
/// SMQ answers those in milliseconds; fifteen seconds is far beyond a
/// healthy answer yet short enough to retry within a message's visibility.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// TCP and TLS connect timeout.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The visibility timeouts SMQ accepts, in seconds.
pub const VISIBILITY_RANGE_SECS: std::ops::RangeInclusive<u64> = 1..=43_200;
/// How much of an unreadable error body an error message quotes.
const ERROR_BODY_QUOTE: usize = 200;

/// What a query value may carry unescaped: RFC 3986's unreserved set, as
/// Go's `url.QueryEscape` leaves it (a receipt handle's `+`, `/` and `=` are
/// escaped).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// A connection to one SMQ endpoint with one set of credentials.
///
/// Cheap to clone: clones share the connection pool and the credentials
/// (so [`Client::set_credentials`] reaches them all).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    endpoint: Url,
    credentials: RwLock<Arc<Credentials>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.inner.endpoint.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `endpoint` (e.g. `https://<account>.mns.<region>.aliyuncs.com`,
    /// or `http://127.0.0.1:<port>` for the emulator).
    pub fn new(endpoint: &str, credentials: Credentials) -> Result<Self> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| Error::Protocol(format!("cannot build the HTTP client: {e}")))?;
        Client::with_http_client(endpoint, credentials, http)
    }

    /// The same, on a caller's `reqwest::Client` (proxies, custom roots).
    /// Per-request timeouts are still set by this crate.
    pub fn with_http_client(
        endpoint: &str,
        credentials: Credentials,
        http: reqwest::Client,
    ) -> Result<Self> {
        let endpoint = parse_endpoint(endpoint)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                endpoint,
                credentials: RwLock::new(Arc::new(credentials)),
            }),
        })
    }

    /// A client for the endpoint an ARN implies, or for `endpoint_override`
    /// when given (an internal endpoint, a local emulator).
    pub fn for_arn(
        arn: &Arn,
        endpoint_override: Option<&str>,
        credentials: Credentials,
    ) -> Result<Self> {
        match endpoint_override {
            Some(endpoint) => Client::new(endpoint, credentials),
            None => Client::new(&arn.endpoint(), credentials),
        }
    }

    /// Replace the credentials (an STS token was refreshed). Calls already
    /// signed keep the old ones.
    pub fn set_credentials(&self, credentials: Credentials) {
        *self
            .inner
            .credentials
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(credentials);
    }

    /// The endpoint requests go to.
    pub fn endpoint(&self) -> &Url {
        &self.inner.endpoint
    }

    /// A handle on one queue. No request is made.
    pub fn queue(&self, name: &str) -> Queue {
        let segment = utf8_percent_encode(name, QUERY_VALUE).to_string();
        Queue {
            client: self.clone(),
            name: name.to_owned(),
            messages_path: format!("/queues/{segment}/messages"),
            queue_path: format!("/queues/{segment}"),
        }
    }

    fn credentials(&self) -> Arc<Credentials> {
        self.inner
            .credentials
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Send one signed request; `resource` is the path and query exactly as
    /// it goes on the wire. Returns the body of a 2xx answer, the parsed SMQ
    /// error otherwise.
    async fn call(
        &self,
        action: &'static str,
        method: Method,
        resource: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<Bytes> {
        let answer = self
            .exchange(action, method, resource, body, timeout)
            .await?;
        if answer.status.is_success() {
            Ok(answer.body)
        } else {
            Err(service_error(
                answer.status,
                &answer.body,
                answer.request_id,
            ))
        }
    }

    /// Send one signed request and return whatever SMQ answered.
    async fn exchange(
        &self,
        action: &'static str,
        method: Method,
        resource: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<Answer> {
        let url = self
            .inner
            .endpoint
            .join(resource)
            .map_err(|e| Error::InvalidArgument(format!("resource `{resource}`: {e}")))?;
        // Sign what reqwest will send: the URL's own path and query.
        let wire_resource = match url.query() {
            Some(query) => format!("{}?{}", url.path(), query),
            None => url.path().to_owned(),
        };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(XML_CONTENT_TYPE));
        let date = httpdate::fmt_http_date(SystemTime::now());
        headers.insert(
            DATE,
            HeaderValue::from_str(&date)
                .map_err(|e| Error::Protocol(format!("date header: {e}")))?,
        );
        if let Some(body) = &body {
            let md5 = signature::content_md5(body.as_bytes());
            headers.insert(
                CONTENT_MD5,
                HeaderValue::from_str(&md5)
                    .map_err(|e| Error::Protocol(format!("Content-MD5 header: {e}")))?,
            );
        }
        signature::sign_request(
            &self.credentials(),
            method.as_str(),
            &wire_resource,
            &mut headers,
        );

        let mut request = self
            .inner
            .http
            .request(method.clone(), url)
            .headers(headers)
            .timeout(timeout);
        if let Some(body) = body {
            request = request.body(body);
        }
        let started = std::time::Instant::now();
        let response = request.send().await.map_err(|e| {
            tracing::debug!(action, error = %e, "SMQ request failed");
            Error::Network(e)
        })?;
        let status = response.status();
        let request_id = response
            .headers()
            .get("x-mns-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = response.bytes().await.map_err(Error::Network)?;
        tracing::debug!(
            action,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            request_id = request_id.as_deref().unwrap_or(""),
            "SMQ answered"
        );
        Ok(Answer {
            status,
            request_id,
            body: bytes,
        })
    }
}

/// An HTTP answer from SMQ, success or not.
struct Answer {
    status: StatusCode,
    request_id: Option<String>,
    body: Bytes,
}

fn parse_endpoint(endpoint: &str) -> Result<Url> {
    let bad = |reason: &str| Error::InvalidArgument(format!("SMQ endpoint `{endpoint}`: {reason}"));
    let url = Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if url.host_str().is_none() {
        return Err(bad("no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("credentials do not belong in the URL"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("give the endpoint without a path or query"));
    }
    Ok(url)
}

/// Turn a failed answer into an error: SMQ's `<Error>` body when there is
/// one, else the status alone (a proxy's 502 is still a retryable 5xx).
fn service_error(status: StatusCode, body: &[u8], request_id: Option<String>) -> Error {
    let text = String::from_utf8_lossy(body);
    match xml::from_document::<xml::ErrorXml>("Error", &text) {
        Ok(e) => {
            let mut err = ServiceError::new(status.as_u16(), ErrorCode::parse(&e.code), e.message);
            let id = if e.request_id.is_empty() {
                request_id
            } else {
                Some(e.request_id)
            };
            if let Some(id) = id {
                err = err.with_request_id(id);
            }
            err.into()
        }
        Err(_) => {
            let quoted: String = text.chars().take(ERROR_BODY_QUOTE).collect();
            let reason = status
                .canonical_reason()
                .unwrap_or("Unknown")
                .replace(' ', "");
            let mut err = ServiceError::new(status.as_u16(), ErrorCode::Other(reason), quoted);
            if let Some(id) = request_id {
                err = err.with_request_id(id);
            }
            err.into()
        }
    }
}

/// A handle on one queue: the queue actions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Queue {
    client: Client,
    name: String,
    messages_path: String,
    queue_path: String,
}

/// A message as (Batch)ReceiveMessage returns it. Times are epoch
/// milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// SMQ's message id (stable across redeliveries).
    pub message_id: String,
    /// The handle for delete and visibility changes; a new one on every
    /// receive and every visibility change, and only the latest is valid.
    pub receipt_handle: String,
    /// The body as SMQ stored it (see [`crate::message`] for its shapes).
    pub body: String,
    /// Upper-case hex MD5 of `body`, as SMQ computed it.
    pub body_md5: String,
    /// When the message was sent.
    pub enqueue_time: u64,
    /// When it becomes visible again unless deleted or extended.
    pub next_visible_time: u64,
    /// When it was first received.
    pub first_dequeue_time: u64,
    /// How many times it has been received; above 1 means a redelivery.
    pub dequeue_count: u32,
    /// SMQ priority, 1 (highest) to 16.
    pub priority: u32,
}

impl ReceivedMessage {
    /// A message with this id, handle and body, its MD5 computed and the
    /// other fields zero: for tests and mock transports.
    pub fn new(
        message_id: impl Into<String>,
        receipt_handle: impl Into<String>,
        body: impl Into<String>,
    ) -> Self {
        let body = body.into();
        ReceivedMessage {
            message_id: message_id.into(),
            receipt_handle: receipt_handle.into(),
            body_md5: signature::message_md5(body.as_bytes()),
            body,
            enqueue_time: 0,
            next_visible_time: 0,
            first_dequeue_time: 0,
            dequeue_count: 1,
            priority: 8,
        }
    }

    fn from_xml(m: xml::ReceivedXml) -> Self {
        ReceivedMessage {
            message_id: m.message_id,
            receipt_handle: m.receipt_handle,
            body: m.message_body,
            body_md5: m.message_body_md5,
            enqueue_time: m.enqueue_time,
            next_visible_time: m.next_visible_time,
            first_dequeue_time: m.first_dequeue_time,
            dequeue_count: m.dequeue_count,
            priority: m.priority,
        }
    }

    #[cfg(feature = "emulator")]
    pub(crate) fn to_xml(&self) -> xml::ReceivedXml {
        xml::ReceivedXml {
            xmlns: xml::Xmlns,
            message_id: self.message_id.clone(),
            receipt_handle: self.receipt_handle.clone(),
            message_body_md5: self.body_md5.clone(),
            message_body: self.body.clone(),
            enqueue_time: self.enqueue_time,
            next_visible_time: self.next_visible_time,
            first_dequeue_time: self.first_dequeue_time,
            dequeue_count: self.dequeue_count,
            priority: self.priority,
        }
    }
}

/// A message to send, with optional delay and priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    body: String,
    delay: Option<Duration>,
    priority: Option<u32>,
}

impl OutgoingMessage {
    /// A message with this body, sent as is (no base64).
    pub fn new(body: impl Into<String>) -> Self {
        OutgoingMessage {
            body: body.into(),
            delay: None,
            priority: None,
        }
    }

    /// Keep the message invisible for this long after sending (whole
    /// seconds, up to 7 days).
    #[must_use]
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// SMQ priority, 1 (highest) to 16; 8 when not set.
    #[must_use]
    pub fn priority(mut self, priority: u32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The body.
    pub fn body(&self) -> &str {
        &self.body
    }
}

impl From<&str> for OutgoingMessage {
    fn from(body: &str) -> Self {
        OutgoingMessage::new(body)
    }
}

impl From<String> for OutgoingMessage {
    fn from(body: String) -> Self {
        OutgoingMessage::new(body)
    }
}

/// SendMessage's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The new message's id.
    pub message_id: String,
    /// Upper-case hex MD5 of the body SMQ stored.
    pub body_md5: String,
}

/// ChangeMessageVisibility's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisibilityChanged {
    /// The new receipt handle; the old one is no longer valid.
    pub receipt_handle: String,
    /// When the message becomes visible again (epoch ms).
    pub next_visible_time: u64,
}

/// One handle BatchDeleteMessage could not delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    /// The handle as given.
    pub receipt_handle: String,
    /// Why, e.g. [`ErrorCode::ReceiptHandleError`].
    pub code: ErrorCode,
    /// SMQ's message.
    pub message: String,
}

/// GetQueueAttributes' answer (the fields a consumer checks at start-up).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueueAttributes {
    /// The queue's name.
    pub name: String,
    /// Default visibility timeout, seconds.
    pub visibility_timeout: u32,
    /// Default long-poll wait, seconds.
    pub polling_wait_seconds: u32,
    /// Largest message, bytes.
    pub maximum_message_size: u32,
    /// Default delay, seconds.
    pub delay_seconds: u32,
    /// How long a message is kept, seconds.
    pub message_retention_period: u32,
    /// Visible messages (approximate; SMQ is deprecating it).
    pub active_messages: u64,
    /// Received, not yet deleted or visible again (approximate).
    pub inactive_messages: u64,
    /// Delayed messages (approximate).
    pub delay_messages: u64,
}

fn wait_seconds(wait: Duration) -> Result<u64> {
    if wait > MAX_WAIT {
        return Err(Error::InvalidArgument(format!(
            "a long poll waits at most {} s, not {:?}",
            MAX_WAIT.as_secs(),
            wait
        )));
    }
    Ok(wait.as_secs())
}

fn poll_timeout(wait: Option<Duration>) -> Duration {
    // Without an explicit wait the queue's own PollingWaitSeconds applies,
    // which can be up to the maximum.
    wait.unwrap_or(MAX_WAIT) + LONG_POLL_SLACK
}

impl Queue {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// ReceiveMessage: one message, waiting up to `wait` (at most 30 s;
    /// `None` uses the queue's PollingWaitSeconds).
    ///
    /// `Ok(None)` when SMQ answers `MessageNotExist`. SMQ also answers that
    /// **at once** when too many long polls are open, so a caller that gets
    /// `None` much sooner than `wait` must back off before polling again.
    pub async fn receive(&self, wait: Option<Duration>) -> Result<Option<ReceivedMessage>> {
        let mut resource = self.messages_path.clone();
        if let Some(wait) = wait {
            resource.push_str(&format!("?waitseconds={}", wait_seconds(wait)?));
        }
        match self
            .client
            .call(
                "ReceiveMessage",
                Method::GET,
                &resource,
                None,
                poll_timeout(wait),
            )
            .await
        {
            Ok(body) => {
                let m: xml::ReceivedXml =
                    xml::from_document("Message", &String::from_utf8_lossy(&body))?;
                Ok(Some(ReceivedMessage::from_xml(m)))
            }
            Err(e) if e.code() == Some(&ErrorCode::MessageNotExist) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// BatchReceiveMessage: up to `max` (1-16) messages, waiting up to
    /// `wait` (at most 30 s; `None` uses the queue's PollingWaitSeconds) for
    /// the first. Empty on `MessageNotExist`; see [`Queue::receive`] about
    /// an empty answer that comes back at once.
    pub async fn batch_receive(
        &self,
        max: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<ReceivedMessage>> {
        if !(1..=MAX_BATCH).contains(&max) {
            return Err(Error::InvalidArgument(format!(
                "a batch receive takes 1 to {MAX_BATCH} messages, not {max}"
            )));
        }
        let mut resource = format!("{}?numOfMessages={max}", self.messages_path);
        if let Some(wait) = wait {
            resource.push_str(&format!("&waitseconds={}", wait_seconds(wait)?));
        }
        match self
            .client
            .call(
                "BatchReceiveMessage",
                Method::GET,
                &resource,
                None,
                poll_timeout(wait),
            )
            .await
        {
            Ok(body) => {
                let batch: xml::ReceivedBatchXml =
                    xml::from_document("Messages", &String::from_utf8_lossy(&body))?;
                Ok(batch
                    .messages
                    .into_iter()
                    .map(ReceivedMessage::from_xml)
                    .collect())
            }
            Err(e) if e.code() == Some(&ErrorCode::MessageNotExist) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// DeleteMessage. The handle is escaped in the query and signed in that
    /// form. Fails with `ReceiptHandleError` when the handle is not the
    /// message's latest (it was redelivered or its visibility changed).
    pub async fn delete(&self, receipt_handle: &str) -> Result<()> {
        let resource = format!(
            "{}?ReceiptHandle={}",
            self.messages_path,
            utf8_percent_encode(receipt_handle, QUERY_VALUE)
        );
        self.client
            .call(
                "DeleteMessage",
                Method::DELETE,
                &resource,
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        Ok(())
    }

    /// BatchDeleteMessage for up to 16 handles. `Ok` with the handles that
    /// could not be deleted (empty when all were); `Err` when the call as a
    /// whole failed.
    pub async fn batch_delete<S: AsRef<str>>(
        &self,
        receipt_handles: &[S],
    ) -> Result<Vec<DeleteFailure>> {
        if receipt_handles.is_empty() {
            return Ok(Vec::new());
        }
        if receipt_handles.len() > MAX_BATCH {
            return Err(Error::InvalidArgument(format!(
                "a batch delete takes at most {MAX_BATCH} handles, not {}",
                receipt_handles.len()
            )));
        }
        let body = xml::to_document(
            "ReceiptHandles",
            &xml::ReceiptHandlesXml {
                xmlns: xml::Xmlns,
                handles: receipt_handles
                    .iter()
                    .map(|h| h.as_ref().to_owned())
                    .collect(),
            },
        )?;
        let answer = self
            .client
            .exchange(
                "BatchDeleteMessage",
                Method::DELETE,
                &self.messages_path,
                Some(body),
                REQUEST_TIMEOUT,
            )
            .await?;
        if answer.status.is_success() {
            return Ok(Vec::new());
        }
        // A partial failure answers `<Errors>`, one entry per failed handle;
        // a failure of the whole call answers `<Error>`.
        let text = String::from_utf8_lossy(&answer.body);
        match xml::from_document::<xml::BatchErrorsXml>("Errors", &text) {
            Ok(errors) => Ok(errors
                .errors
                .into_iter()
                .map(|f| DeleteFailure {
                    receipt_handle: f.receipt_handle,
                    code: ErrorCode::parse(&f.error_code),
                    message: f.error_message,
                })
                .collect()),
            Err(_) => Err(service_error(
                answer.status,
                &answer.body,
                answer.request_id,
            )),
        }
    }

    /// ChangeMessageVisibility: hide the message for `visibility` from now
    /// (1 s to 12 h). Returns the new handle; the old one stops working.
    pub async fn change_visibility(
        &self,
        receipt_handle: &str,
        visibility: Duration,
    ) -> Result<VisibilityChanged> {
        let secs = visibility.as_secs();
        if !VISIBILITY_RANGE_SECS.contains(&secs) {
            return Err(Error::InvalidArgument(format!(
                "a visibility timeout is 1 to 43200 s, not {visibility:?}"
            )));
        }
        let resource = format!(
            "{}?ReceiptHandle={}&VisibilityTimeout={secs}",
            self.messages_path,
            utf8_percent_encode(receipt_handle, QUERY_VALUE)
        );
        let body = self
            .client
            .call(
                "ChangeMessageVisibility",
                Method::PUT,
                &resource,
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        let v: xml::ChangeVisibilityXml =
            xml::from_document("ChangeVisibility", &String::from_utf8_lossy(&body))?;
        Ok(VisibilityChanged {
            receipt_handle: v.receipt_handle,
            next_visible_time: v.next_visible_time,
        })
    }

    /// SendMessage. The body is sent as given (encode it yourself if the
    /// consumer expects base64). Checks the MD5 SMQ reports.
    pub async fn send(&self, message: impl Into<OutgoingMessage>) -> Result<SentMessage> {
        let message = message.into();
        let body = xml::to_document(
            "Message",
            &xml::SendXml {
                xmlns: xml::Xmlns,
                message_body: message.body.clone(),
                delay_seconds: message.delay.map(|d| d.as_secs() as u32),
                priority: message.priority,
            },
        )?;
        let answer = self
            .client
            .call(
                "SendMessage",
                Method::POST,
                &self.messages_path,
                Some(body),
                REQUEST_TIMEOUT,
            )
            .await?;
        let sent: xml::SentXml = xml::from_document("Message", &String::from_utf8_lossy(&answer))?;
        let ours = signature::message_md5(message.body.as_bytes());
        if !sent.message_body_md5.eq_ignore_ascii_case(&ours) {
            return Err(Error::Md5Mismatch {
                expected: sent.message_body_md5,
                actual: ours,
            });
        }
        Ok(SentMessage {
            message_id: sent.message_id,
            body_md5: sent.message_body_md5,
        })
    }

    /// GetQueueAttributes: a cheap start-up check that the queue exists and
    /// the key may use it.
    pub async fn attributes(&self) -> Result<QueueAttributes> {
        let body = self
            .client
            .call(
                "GetQueueAttributes",
                Method::GET,
                &self.queue_path,
                None,
                REQUEST_TIMEOUT,
            )
            .await?;
        let q: xml::QueueXml = xml::from_document("Queue", &String::from_utf8_lossy(&body))?;
        Ok(QueueAttributes {
            name: q.queue_name,
            visibility_timeout: q.visibility_timeout,
            polling_wait_seconds: q.polling_wait_seconds,
            maximum_message_size: q.maximum_message_size,
            delay_seconds: q.delay_seconds,
            message_retention_period: q.message_retention_period,
            active_messages: q.active_messages,
            inactive_messages: q.inactive_messages,
            delay_messages: q.delay_messages,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_handles_are_escaped_like_go_query_escape() {
        let escaped = utf8_percent_encode("1-ODU4+OTkz/NDU5My0=", QUERY_VALUE).to_string();
        assert_eq!(escaped, "1-ODU4%2BOTkz%2FNDU5My0%3D");
        assert_eq!(
            utf8_percent_encode("a_b.c~d", QUERY_VALUE).to_string(),
            "a_b.c~d"
        );
    }

    #[test]
    fn endpoints_must_be_bare_http_urls() {
        assert!(parse_endpoint("https://1.mns.cn-hangzhou.aliyuncs.com").is_ok());
        assert!(parse_endpoint("http://127.0.0.1:8080/").is_ok());
        for bad in [
            "ftp://host",
            "https://user:pw@host",
            "https://host/prefix",
            "https://host?x=1",
            "not a url",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_unreadable_5xx_is_still_a_retryable_service_error() {
        let e = service_error(
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway</html>",
            Some("rid".into()),
        );
        assert!(e.is_retryable());
        let s = e.service().expect("service");
        assert_eq!(s.status(), 502);
        assert_eq!(s.code(), &ErrorCode::Other("BadGateway".into()));
        assert_eq!(s.request_id(), Some("rid"));
    }

    #[test]
    fn an_error_body_becomes_a_typed_error() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error xmlns="http://mns.aliyuncs.com/doc/v1/">
  <Code>QueueNotExist</Code>
  <Message>The queue name you provided is not exist.</Message>
  <RequestId>5FD0A8E1</RequestId>
  <HostId>http://1.mns.cn-hangzhou.aliyuncs.com</HostId>
</Error>"#;
        let e = service_error(StatusCode::NOT_FOUND, body, None);
        assert_eq!(e.code(), Some(&ErrorCode::QueueNotExist));
        assert!(!e.is_retryable());
        assert_eq!(
            e.service().and_then(ServiceError::request_id),
            Some("5FD0A8E1")
        );
    }

    #[test]
    fn long_polls_get_a_timeout_longer_than_their_wait() {
        assert!(poll_timeout(Some(Duration::from_secs(30))) > Duration::from_secs(30));
        assert!(poll_timeout(None) > MAX_WAIT);
        assert!(wait_seconds(Duration::from_secs(31)).is_err());
        assert_eq!(wait_seconds(Duration::from_millis(2500)).expect("ok"), 2);
    }
}
