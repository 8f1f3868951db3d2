//! The HTTP plumbing every client shares: endpoints, one pooled reqwest
//! client, and the attempt loop that retries transient failures.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Url;

use crate::error::{Error, Result, error_chain};
use crate::retry::RetryPolicy;

/// Per-attempt timeout: connect, send and read the whole answer. These APIs
/// answer in well under a second; 30 s leaves room for a slow gateway while
/// keeping several attempts inside a handler's deadline.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest body excerpt kept in an error message.
const EXCERPT: usize = 300;

/// The `User-Agent` of every call.
pub(crate) const USER_AGENT: &str = concat!("stackhook/", env!("CARGO_PKG_VERSION"));

/// The process-wide pooled client (rustls), built on first use.
pub(crate) fn shared_client() -> Result<reqwest::Client> {
    static CLIENT: OnceLock<std::result::Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(USER_AGENT)
                .build()
                .map_err(|e| error_chain(&e))
        })
        .clone()
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
}

/// Parse an endpoint: a bare host (`ros.aliyuncs.com`, HTTPS implied) or a
/// URL (`https://…`, or `http://127.0.0.1:8080` for local testing).
pub(crate) fn parse_endpoint(endpoint: &str) -> Result<Url> {
    let text = endpoint.trim();
    let with_scheme = if text.contains("://") {
        text.to_string()
    } else {
        format!("https://{text}")
    };
    let url = Url::parse(&with_scheme)
        .map_err(|e| Error::validation("endpoint", format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::validation(
            "endpoint",
            format!("{text:?} must be an http:// or https:// URL with a host"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::validation(
            "endpoint",
            format!("{text:?} must not carry a query or fragment"),
        ));
    }
    Ok(url)
}

/// The `Host` header for `url`: host, plus `:port` when not the default.
pub(crate) fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The start of a body, as text, for an error message.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// An answer, read whole.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

/// What to do with an answer.
pub(crate) enum Verdict<T> {
    /// Done.
    Done(T),
    /// A transient failure: try again (after at least `time_left`).
    Retry {
        error: Error,
        time_left: Option<Duration>,
    },
    /// A failure that retrying will not fix.
    Fail(Error),
}

/// Run attempts until one is decided or the policy runs out. `build` makes a
/// freshly signed request for each attempt; `judge` decides about an answer.
/// Transport failures are always retried.
pub(crate) async fn attempts<T>(
    service: &'static str,
    action: &str,
    policy: &RetryPolicy,
    timeout: Duration,
    mut build: impl FnMut() -> Result<reqwest::RequestBuilder>,
    mut judge: impl FnMut(Reply) -> Verdict<T>,
) -> Result<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let request = build()?.timeout(timeout);
        let (error, time_left) = match send(request).await {
            Ok(reply) => match judge(reply) {
                Verdict::Done(value) => return Ok(value),
                Verdict::Fail(error) => return Err(with_attempts(error, attempt, false)),
                Verdict::Retry { error, time_left } => (error, time_left),
            },
            // The URL can carry a V2 signature, an STS token or a presigned
            // query: never let it into a message.
            Err(error) => (
                Error::Transport {
                    service,
                    message: format!("{action}: {}", error_chain(&error.without_url())),
                },
                None,
            ),
        };
        if attempt >= policy.max_attempts() {
            return Err(with_attempts(error, attempt, true));
        }
        let delay = policy.delay(attempt - 1, time_left);
        tracing::debug!(service, action, attempt, ?delay, error = %error, "retrying");
        tokio::time::sleep(delay).await;
    }
}

async fn send(request: reqwest::RequestBuilder) -> reqwest::Result<Reply> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn with_attempts(error: Error, attempts: u32, exhausted: bool) -> Error {
    match error {
        Error::Api(mut api) => {
            api.attempts = attempts;
            api.retryable = exhausted;
            Error::Api(api)
        }
        Error::Transport { service, message } if attempts > 1 => Error::Transport {
            service,
            message: format!("{message} (after {attempts} attempts)"),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_hosts_and_urls() {
        let url = parse_endpoint("ros.aliyuncs.com").expect("host");
        assert_eq!(url.as_str(), "https://ros.aliyuncs.com/");
        assert_eq!(host_header(&url), "ros.aliyuncs.com");
        let url = parse_endpoint("http://127.0.0.1:8080").expect("url");
        assert_eq!(host_header(&url), "127.0.0.1:8080");
        assert!(parse_endpoint("ftp://x").is_err());
        assert!(parse_endpoint("https://x/?a=b").is_err());
    }

    #[test]
    fn excerpts_are_short() {
        assert_eq!(excerpt(b"  hi  "), "hi");
        assert_eq!(excerpt(&[b'x'; 1000]).chars().count(), EXCERPT + 1);
    }
}
