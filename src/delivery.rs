//! Delivering an answer to ROS's presigned callback URL.
//!
//! POST (or PUT) of the JSON body with `Content-Type: application/json`,
//! `Accept: application/json` and a GMT `Date` header, to the intranet URL,
//! the public URL, or the intranet one first and then the public one (`auto`).
//!
//! Connection errors, timeouts, 5xx and 429 are retried with exponential
//! backoff and full jitter until the request's time runs out; each attempt
//! has its own timeout. Any other 4xx is final for that URL. Redirects are not
//! followed: a presigned URL that redirects is not ROS's.

use std::borrow::Cow;
use std::future::Future;
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::time::Instant;

use crate::config::{CallbackEndpoint, CallbackMethod, Config};
use crate::error::{Error, Result};
use crate::request::{CallbackUrl, Request};
use crate::response::Response;

// Defined with the wire model, below both delivery and the callback guard.
pub use crate::request::Target;

/// First backoff step; doubles each round up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Largest backoff step: ROS polls its side for the answer, so waiting longer
/// than this between tries only delays the stack.
const BACKOFF_CAP: Duration = Duration::from_secs(8);
/// Connect timeout for the public URL.
const PUBLIC_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The `User-Agent` of every callback.
pub const USER_AGENT: &str = concat!("stackhook/", env!("CARGO_PKG_VERSION"));

/// A delivered answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivered {
    /// The URL that took it.
    pub target: Target,
    /// The callback's HTTP status (2xx).
    pub status: u16,
    /// Attempts made, this one included.
    pub attempts: u32,
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Attempt {
    /// 2xx.
    Delivered(u16),
    /// Worth trying again: connection trouble, timeout, 5xx, 429.
    Retry { connect: bool, detail: String },
    /// The URL refused the answer (4xx other than 429): do not try it again.
    Refused(String),
}

/// Sends answers. Cheap to clone; clones share connection pools.
#[derive(Debug, Clone)]
pub struct Delivery {
    public: reqwest::Client,
    intranet: reqwest::Client,
    endpoint: CallbackEndpoint,
    method: CallbackMethod,
    attempt_timeout: Duration,
    guard: crate::security::callback_guard::CallbackGuard,
}

impl Delivery {
    /// A sender configured by `config`.
    ///
    /// # Errors
    /// [`Error::Config`] when the TLS stack cannot be initialised.
    pub fn new(config: &Config) -> Result<Self> {
        let guard = config.callback_guard();
        let build = |connect: Duration, strict_dns: bool| {
            reqwest::Client::builder()
                .dns_resolver(guard.resolver(strict_dns))
                .user_agent(USER_AGENT)
                .redirect(reqwest::redirect::Policy::none())
                .connect_timeout(connect)
                .pool_idle_timeout(Duration::from_secs(60))
                .build()
                .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
        };
        Ok(Delivery {
            public: build(PUBLIC_CONNECT_TIMEOUT, true)?,
            intranet: build(config.intranet_connect_timeout, false)?,
            endpoint: config.callback_endpoint,
            method: config.callback_method,
            attempt_timeout: config.attempt_timeout,
            guard,
        })
    }

    /// The URLs to try for `request`, in order, by the endpoint policy.
    ///
    /// `public` and `intranet` name the URL to use; when the request lacks
    /// it, the other one is used rather than leaving the stack unanswered.
    pub fn targets<'a>(
        &self,
        request: &'a Request,
    ) -> impl Iterator<Item = (Target, &'a CallbackUrl)> + use<'a> {
        let public = request.response_url.as_ref().map(|u| (Target::Public, u));
        let intranet = request
            .intranet_response_url
            .as_ref()
            .map(|u| (Target::Intranet, u));
        let ordered = match self.endpoint {
            CallbackEndpoint::Public => [public.or(intranet), None],
            CallbackEndpoint::Intranet => [intranet.or(public), None],
            CallbackEndpoint::Auto => [intranet, public],
        };
        ordered.into_iter().flatten()
    }

    /// Why no answer to `request` may be sent: the callback guard refuses
    /// every URL the endpoint policy would use. Each refusal names the URL
    /// (public or intranet), its host and, where a setting can allow it,
    /// the flag that does; never a URL's query. `None` when a URL passes,
    /// or there is none.
    pub(crate) fn refused(&self, request: &Request) -> Option<String> {
        self.guard.refuse_all(self.targets(request))
    }

    /// Deliver `response` to `request`'s callback, retrying until `until`.
    ///
    /// # Errors
    /// [`Error::Delivery`] when no URL fits the policy, every URL refused the
    /// answer, or time ran out; the message names the last failure (never the
    /// URL's query string). [`Error::CallbackRefused`] when the callback guard
    /// allows none of the URLs.
    pub async fn deliver(
        &self,
        request: &Request,
        response: &Response,
        until: Instant,
    ) -> Result<Delivered> {
        self.deliver_body(request, bytes::Bytes::from(response.to_body()), until)
            .await
    }

    /// Deliver an already-encoded body ([`Response::to_body`]).
    pub(crate) async fn deliver_body(
        &self,
        request: &Request,
        body: bytes::Bytes,
        until: Instant,
    ) -> Result<Delivered> {
        // One URL of each kind at most, kept on the stack. The first
        // attempt to a URL takes its parsed form; a retry parses it again,
        // so the way to an answer that delivers at once copies nothing.
        let mut approved: [Option<(Target, &CallbackUrl, Option<reqwest::Url>)>; 2] = [None, None];
        let mut slots = approved.iter_mut();
        let kept = self
            .guard
            .approve_targets(self.targets(request), |target, url, parsed| {
                if let Some(slot) = slots.next() {
                    *slot = Some((target, url, Some(parsed)));
                }
            })?;
        if kept == 0 {
            return Err(Error::Delivery(format!(
                "the request has no callback URL for the `{}` endpoint policy",
                self.endpoint
            )));
        }
        let mut kinds = [Target::Public; 2];
        for (kind, (target, _, _)) in kinds.iter_mut().zip(approved.iter().flatten()) {
            *kind = *target;
        }
        let kinds = &kinds[..kept.min(kinds.len())];
        deliver_with_retries(kinds, until, |target, timeout| {
            let chosen = approved
                .iter_mut()
                .flatten()
                .find(|(t, _, _)| *t == target)
                .map(|(_, url, parsed)| {
                    let url: &CallbackUrl = url;
                    let parsed = parsed
                        .take()
                        .map_or_else(|| self.guard.approve_target(target, url), Ok);
                    (url, parsed)
                });
            let body = body.clone();
            async move {
                match chosen {
                    Some((url, Ok(parsed))) => {
                        self.attempt(target, url, parsed, body, timeout).await
                    }
                    Some((_, Err(refusal))) => Attempt::Refused(refusal),
                    None => Attempt::Refused("no such URL".into()),
                }
            }
        })
        .await
    }

    /// One POST (or PUT) of the answer. `url` is for logs (redacted);
    /// `parsed` is the same URL, approved by the callback guard.
    async fn attempt(
        &self,
        target: Target,
        url: &CallbackUrl,
        parsed: reqwest::Url,
        body: bytes::Bytes,
        timeout: Duration,
    ) -> Attempt {
        let client = match target {
            Target::Public => &self.public,
            Target::Intranet => &self.intranet,
        };
        let method = match self.method {
            CallbackMethod::Post => reqwest::Method::POST,
            CallbackMethod::Put => reqwest::Method::PUT,
        };
        let sent = client
            .request(method, parsed)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::DATE,
                httpdate::fmt_http_date(SystemTime::now()),
            )
            .timeout(timeout.min(self.attempt_timeout))
            .body(body)
            .send()
            .await;
        let outcome = match sent {
            Ok(reply) => classify_status(reply.status().as_u16()),
            // Not a usable http(s) URL: no retry can ever send to it.
            Err(e) if e.is_builder() => Attempt::Refused(describe_transport_error(&e)),
            Err(e) => Attempt::Retry {
                connect: e.is_connect(),
                detail: describe_transport_error(&e),
            },
        };
        match &outcome {
            Attempt::Delivered(status) => {
                tracing::info!(target = target.as_str(), url = %url, status, "answer delivered");
            }
            Attempt::Retry { detail, .. } | Attempt::Refused(detail) => {
                tracing::warn!(target = target.as_str(), url = %url, error = %detail, "callback attempt failed");
            }
        }
        outcome
    }
}

/// 2xx delivers; 429 and 5xx are worth retrying; any other status is final.
pub(crate) fn classify_status(status: u16) -> Attempt {
    match status {
        200..=299 => Attempt::Delivered(status),
        429 | 500..=599 => Attempt::Retry {
            connect: false,
            detail: format!("HTTP {status}"),
        },
        _ => Attempt::Refused(format!("HTTP {status}")),
    }
}

/// A transport error without the URL (reqwest puts the full URL, query and
/// all, into its Display).
fn describe_transport_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else if error.is_request() {
        "request failed"
    } else {
        "transport error"
    };
    let mut root: &dyn std::error::Error = error;
    while let Some(next) = root.source() {
        root = next;
    }
    if std::ptr::addr_eq(root, error as &dyn std::error::Error) {
        kind.to_string()
    } else {
        format!("{kind}: {root}")
    }
}

/// The retry loop, apart from HTTP so it can be tested under paused time.
///
/// Each round tries the targets in order. A target that refuses the answer is
/// dropped; in a round with a fallback left, a target that cannot even be
/// connected to is dropped too (the intranet URL outside Alibaba Cloud).
/// Between rounds it sleeps a full-jitter backoff, and it stops at `until`
/// (the first round always runs).
pub(crate) async fn deliver_with_retries<F, Fut>(
    targets: &[Target],
    until: Instant,
    mut attempt: F,
) -> Result<Delivered>
where
    F: FnMut(Target, Duration) -> Fut,
    Fut: Future<Output = Attempt>,
{
    // The targets still worth trying, as a mask over `targets` (there are
    // two kinds of target, so never more than a few): nothing to allocate
    // on the way to the first attempt, which nearly always delivers.
    let count = targets.len().min(u64::BITS as usize);
    let mut live: u64 = if count == 0 {
        0
    } else {
        u64::MAX >> (64 - count)
    };
    let mut attempts = 0u32;
    let mut last_error = Cow::Borrowed("no attempt was made");
    for round in 0u32.. {
        for (index, &target) in targets.iter().enumerate().take(count) {
            let bit = 1u64 << index;
            if live & bit == 0 {
                continue;
            }
            let left = until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            attempts += 1;
            match attempt(target, left).await {
                Attempt::Delivered(status) => {
                    return Ok(Delivered {
                        target,
                        status,
                        attempts,
                    });
                }
                Attempt::Refused(detail) => {
                    last_error =
                        format!("{} URL refused the answer: {detail}", target.as_str()).into();
                    live &= !bit;
                }
                Attempt::Retry { connect, detail } => {
                    last_error = format!("{} URL: {detail}", target.as_str()).into();
                    // An unreachable URL gives way to another, if one is left.
                    if connect && live.count_ones() > 1 {
                        live &= !bit;
                    }
                }
            }
        }
        if live == 0 {
            break;
        }
        let step = BACKOFF_BASE
            .saturating_mul(1u32 << round.min(16))
            .min(BACKOFF_CAP);
        let sleep = rand::rng()
            .random_range(Duration::from_millis(50)..=step.max(Duration::from_millis(50)));
        if Instant::now() + sleep >= until {
            last_error = format!("gave up after {attempts} attempts: {last_error}").into();
            break;
        }
        tokio::time::sleep(sleep).await;
    }
    Err(Error::Delivery(last_error.into_owned()))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type AttemptLog = Arc<Mutex<Vec<(Target, Instant)>>>;

    fn scripted(
        script: Vec<(Target, Attempt)>,
    ) -> (
        AttemptLog,
        impl FnMut(Target, Duration) -> std::future::Ready<Attempt>,
    ) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&log);
        let mut script = script.into_iter();
        let f = move |target: Target, _timeout: Duration| {
            seen.lock().expect("lock").push((target, Instant::now()));
            let next = script
                .next()
                .map(|(expected, attempt)| {
                    assert_eq!(expected, target, "attempt went to the wrong URL");
                    attempt
                })
                .unwrap_or(Attempt::Delivered(200));
            std::future::ready(next)
        };
        (log, f)
    }

    fn retry(detail: &str) -> Attempt {
        Attempt::Retry {
            connect: false,
            detail: detail.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_5xx_and_429_with_growing_backoff() {
        let (log, f) = scripted(vec![
            (Target::Public, retry("HTTP 500")),
            (Target::Public, retry("HTTP 429")),
            (Target::Public, retry("HTTP 503")),
        ]);
        let start = Instant::now();
        let done = deliver_with_retries(&[Target::Public], start + Duration::from_secs(60), f)
            .await
            .expect("delivered");
        assert_eq!(done.attempts, 4);
        let times: Vec<Duration> = log
            .lock()
            .expect("lock")
            .iter()
            .map(|(_, t)| *t - start)
            .collect();
        assert_eq!(times.len(), 4);
        for pair in times.windows(2) {
            assert!(pair[1] > pair[0], "attempts must be spaced: {times:?}");
        }
        // Full jitter stays under the doubling caps: 250 ms, 500 ms, 1 s.
        assert!(times[3] <= Duration::from_millis(1750), "{times:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn refusal_is_final() {
        let (log, f) = scripted(vec![(Target::Public, Attempt::Refused("HTTP 403".into()))]);
        let err = deliver_with_retries(
            &[Target::Public],
            Instant::now() + Duration::from_secs(60),
            f,
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("403"), "{err}");
        assert_eq!(log.lock().expect("lock").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn auto_falls_back_from_intranet_to_public() {
        let (log, f) = scripted(vec![(
            Target::Intranet,
            Attempt::Retry {
                connect: true,
                detail: "could not connect".into(),
            },
        )]);
        let done = deliver_with_retries(
            &[Target::Intranet, Target::Public],
            Instant::now() + Duration::from_secs(60),
            f,
        )
        .await
        .expect("delivered");
        assert_eq!(done.target, Target::Public);
        assert_eq!(done.attempts, 2);
        let targets: Vec<Target> = log.lock().expect("lock").iter().map(|(t, _)| *t).collect();
        assert_eq!(targets, [Target::Intranet, Target::Public]);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_at_the_deadline() {
        let script = (0..1000)
            .map(|_| (Target::Public, retry("HTTP 502")))
            .collect();
        let (log, f) = scripted(script);
        let start = Instant::now();
        let err = deliver_with_retries(&[Target::Public], start + Duration::from_secs(30), f)
            .await
            .unwrap_err();
        assert!(Instant::now() - start <= Duration::from_secs(30));
        assert!(err.to_string().contains("gave up"), "{err}");
        assert!(log.lock().expect("lock").len() > 3);
    }

    #[test]
    fn targets_follow_the_endpoint_policy_and_fall_back_to_the_url_there_is() {
        let mut both = Request::new(
            crate::RequestType::Create,
            "Custom::Echo",
            "Echo",
            "stack",
            "req",
        );
        both.response_url = Some(CallbackUrl::new("https://public.example.com/cb"));
        both.intranet_response_url = Some(CallbackUrl::new("https://intranet.example.com/cb"));
        let mut public_only = both.clone();
        public_only.intranet_response_url = None;
        let mut neither = both.clone();
        neither.response_url = None;
        neither.intranet_response_url = None;
        let kinds = |endpoint, request: &Request| {
            let config = Config::for_local_testing().callback_endpoint(endpoint);
            let delivery = Delivery::new(&config).expect("delivery");
            delivery
                .targets(request)
                .map(|(target, url)| (target, url.expose().to_owned()))
                .collect::<Vec<_>>()
        };
        let public = || (Target::Public, "https://public.example.com/cb".to_owned());
        let intranet = || {
            (
                Target::Intranet,
                "https://intranet.example.com/cb".to_owned(),
            )
        };
        assert_eq!(kinds(CallbackEndpoint::Public, &both), [public()]);
        assert_eq!(kinds(CallbackEndpoint::Intranet, &both), [intranet()]);
        assert_eq!(kinds(CallbackEndpoint::Auto, &both), [intranet(), public()]);
        assert_eq!(kinds(CallbackEndpoint::Intranet, &public_only), [public()]);
        assert_eq!(kinds(CallbackEndpoint::Auto, &public_only), [public()]);
        assert!(kinds(CallbackEndpoint::Auto, &neither).is_empty());
    }

    #[test]
    fn status_classes() {
        assert_eq!(classify_status(204), Attempt::Delivered(204));
        assert!(matches!(classify_status(429), Attempt::Retry { .. }));
        assert!(matches!(classify_status(503), Attempt::Retry { .. }));
        assert!(matches!(classify_status(404), Attempt::Refused(_)));
        assert!(matches!(classify_status(301), Attempt::Refused(_)));
    }
}
