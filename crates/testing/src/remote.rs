//! Playing ROS over HTTP against a running provider.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::check::{Finding, Rule};
use super::seconds;
use stackhook::config::ROS_SYNC_WAIT;
use stackhook::error::{Error, Result};
use stackhook::request::{CallbackUrl, Request};
use stackhook::sink::{CallbackSink, Received};

/// How a provider at a URL is reached, as the ServiceToken decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `web:` tokens: the reply acknowledges, the answer comes by callback.
    Async,
    /// `web[sync]:` tokens: the answer is the reply, within 10 s.
    Sync,
    /// Function Compute (`POST /invoke`): the answer comes by callback
    /// before the reply.
    FunctionCompute,
    /// An SMQ queue (`acs:mns:…:queues/NAME` tokens): the request is a
    /// message, the answer comes by callback.
    Queue,
}

impl Transport {
    /// The transport a URL's path implies: `/sync`, `/invoke`, or async.
    pub fn for_url(url: &str) -> Transport {
        let path = url.split(['?', '#']).next().unwrap_or(url);
        let path = path.trim_end_matches('/');
        if path.ends_with("/sync") {
            Transport::Sync
        } else if path.ends_with("/invoke") {
            Transport::FunctionCompute
        } else {
            Transport::Async
        }
    }

    /// `async`, `sync` or `fc`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Async => "async",
            Transport::Sync => "sync",
            Transport::FunctionCompute => "fc",
            Transport::Queue => "queue",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A provider at a URL.
#[derive(Debug)]
pub(crate) struct Remote {
    url: String,
    transport: Transport,
    client: reqwest::Client,
    /// Set for [`Transport::Queue`]: requests are sent as its messages.
    queue: Option<stackhook_smq::Queue>,
}

/// What came back over HTTP, before the answers are checked.
#[derive(Debug, Default)]
pub(crate) struct RawExchange {
    /// Final answers: body, and the callback's headers (none for a sync reply).
    pub(crate) answers: Vec<(Bytes, Option<http::HeaderMap>)>,
    pub(crate) findings: Vec<Finding>,
    pub(crate) notes: Vec<String>,
}

impl Remote {
    pub(crate) fn new(url: String) -> Result<Self> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Remote {
            transport: Transport::for_url(&url),
            url,
            client,
            queue: None,
        })
    }

    /// A provider consuming `queue`: each delivery is a message on it.
    pub(crate) fn queue(queue: stackhook_smq::Queue) -> Result<Self> {
        let mut remote = Remote::new(format!("smq:{}", queue.name()))?;
        remote.transport = Transport::Queue;
        remote.queue = Some(queue);
        Ok(remote)
    }

    pub(crate) fn describe(&self) -> String {
        format!(
            "{} ({})",
            stackhook::request::redact_url(&self.url),
            self.transport
        )
    }

    /// Send `request` `deliveries` times and collect its final answers.
    pub(crate) async fn exchange(
        &self,
        request: &mut Request,
        deliveries: u32,
        callback_statuses: &[u16],
        wait: Duration,
        duplicate_wait: Duration,
    ) -> RawExchange {
        let mut raw = RawExchange::default();
        let sink = match CallbackSink::start().await {
            Ok(sink) => sink,
            Err(e) => {
                raw.findings.push(Finding::error(
                    Rule::Reply,
                    format!("the mock could not start its callback receiver: {e}"),
                ));
                return raw;
            }
        };
        request.response_url = Some(CallbackUrl::new(sink.url("/public")));
        request.intranet_response_url = Some(CallbackUrl::new(sink.url("/intranet")));
        sink.script(callback_statuses.iter().copied());

        let wait = match self.transport {
            Transport::Sync => ROS_SYNC_WAIT,
            _ => wait,
        };
        let started = Instant::now();
        let deadline = started + wait;
        let body = Bytes::from(request.to_json());
        let content_type = match self.transport {
            Transport::FunctionCompute => "application/octet-stream",
            _ => "application/json",
        };

        let mut replied = 0;
        let mut statuses = Vec::new();
        for _ in 0..deliveries {
            if let Some(queue) = &self.queue {
                // ROS sends the request as the message body, raw JSON.
                match queue
                    .send(String::from_utf8_lossy(&body).into_owned())
                    .await
                {
                    Ok(_) => {
                        replied += 1;
                        statuses.push("queued".to_owned());
                    }
                    Err(e) => raw.findings.push(Finding::error(
                        Rule::Reply,
                        format!("could not send the request to the SMQ queue: {e}"),
                    )),
                }
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let sent = self
                .client
                .post(&self.url)
                .header(http::header::CONTENT_TYPE, content_type)
                .timeout(left.max(Duration::from_millis(100)))
                .body(body.clone())
                .send()
                .await;
            let reply = match sent {
                Ok(reply) => reply,
                Err(e) if e.is_timeout() => {
                    raw.findings.push(Finding::error(
                        Rule::AnswerInTime,
                        format!(
                            "the provider did not reply within {}: ROS would fail the stack operation",
                            seconds(wait)
                        ),
                    ));
                    continue;
                }
                Err(e) => {
                    raw.findings.push(Finding::error(
                        Rule::Reply,
                        format!("could not reach the provider: {}", describe(&e)),
                    ));
                    continue;
                }
            };
            replied += 1;
            let status = reply.status().as_u16();
            let reply_body = reply.bytes().await.unwrap_or_default();
            if !(200..300).contains(&status) {
                raw.findings.push(Finding::error(
                    Rule::Reply,
                    format!(
                        "the provider replied HTTP {status} to a valid request: {}",
                        String::from_utf8_lossy(&reply_body)
                            .chars()
                            .take(300)
                            .collect::<String>()
                    ),
                ));
            }
            statuses.push(status.to_string());
            if self.transport == Transport::Sync && (200..300).contains(&status) {
                raw.answers.push((reply_body, None));
            }
        }

        let mine = |calls: &[Received]| -> Vec<Received> {
            calls
                .iter()
                .filter(|c| (200..300).contains(&c.answered))
                .cloned()
                .collect()
        };
        if deliveries > 1 {
            raw.notes.push(format!(
                "sent {deliveries} times; the provider replied HTTP {}",
                statuses.join(", ")
            ));
        }
        if replied == 0 {
            // Nothing reached the provider: there is nothing to wait for.
            return raw;
        }
        if self.transport != Transport::Sync {
            // Wait for the first final answer, or until ROS gives up.
            loop {
                let calls = sink.received();
                if !mine(&calls).is_empty() {
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                sink.wait_for(calls.len() + 1, left).await;
            }
        }
        let in_time = mine(&sink.received()).len();
        // Then a bounded extra moment for duplicates.
        tokio::time::sleep(duplicate_wait).await;
        let calls = sink.received();
        let finals = mine(&calls);
        let refused = calls.len() - finals.len();
        if refused > 0 {
            raw.notes.push(format!(
                "the callback refused {refused} attempt(s) as scripted{}",
                if finals.is_empty() {
                    ""
                } else {
                    "; the provider retried"
                }
            ));
        }
        if self.transport == Transport::Sync {
            if !finals.is_empty() {
                raw.findings.push(Finding::error(
                    Rule::OneAnswer,
                    format!(
                        "a web[sync]: request got its answer in the reply and {} callback(s) as well",
                        finals.len()
                    ),
                ));
            }
        } else if in_time == 0 {
            let late = if finals.is_empty() {
                ""
            } else {
                " (an answer came only after that)"
            };
            let hint = if callback_statuses.is_empty() {
                String::new()
            } else {
                format!(
                    " (the callback answered {callback_statuses:?} first; a provider must retry 5xx and 429)"
                )
            };
            raw.findings.push(Finding::error(
                Rule::AnswerInTime,
                format!(
                    "no answer arrived within {}{hint}{late}: ROS would fail the stack operation",
                    seconds(wait)
                ),
            ));
        } else if finals.len() as u32 > deliveries {
            raw.findings.push(Finding::error(
                Rule::OneAnswer,
                format!(
                    "{} final answers arrived for {} deliver{} of one request",
                    finals.len(),
                    deliveries,
                    if deliveries == 1 { "y" } else { "ies" }
                ),
            ));
        }
        for call in finals {
            raw.answers
                .push((call.body.clone(), Some(call.headers.clone())));
        }
        raw
    }
}

fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_follows_the_path() {
        assert_eq!(Transport::for_url("http://h:1/"), Transport::Async);
        assert_eq!(Transport::for_url("http://h:1/sync?x=1"), Transport::Sync);
        assert_eq!(
            Transport::for_url("http://h:1/invoke/"),
            Transport::FunctionCompute
        );
    }
}
