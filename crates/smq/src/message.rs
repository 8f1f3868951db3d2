//! Decoding a message body into the JSON request it carries.
//!
//! ROS does not document what it puts on a queue, and SMQ clients disagree
//! about base64 (the Java and Python SDKs encode by default, Go does not).
//! So every shape is accepted, and the shape that arrived is reported so the
//! consumer can log it:
//!
//! 1. raw JSON: the body is a JSON object;
//! 2. base64 JSON: the body is base64 of a JSON object;
//! 3. a topic envelope (a topic subscribed to the queue): XML
//!    `<Notification>` or a JSON object with `TopicOwner`/`TopicName`,
//!    `MessageId` and `Message`, whose `Message` is raw or base64 JSON.
//!    A SIMPLIFIED subscription delivers the message alone, so it arrives
//!    as shape 1 or 2.
//!
//! `MessageBodyMD5` is checked against the body exactly as received, and an
//! envelope's `MessageMD5` against its message.
//!
//! Errors never quote the body: a ROS request's properties may be secret.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::client::ReceivedMessage;
use crate::error::{Error, Result};
use crate::notification::Notification;
use crate::signature;
use crate::xml;

/// Whether the JSON came wrapped in a topic envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Envelope {
    /// No envelope: sent to the queue directly (or a SIMPLIFIED topic).
    None,
    /// A topic's XML `<Notification>`.
    TopicXml,
    /// A topic's JSON notification.
    TopicJson,
}

/// How the JSON itself was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON text as is.
    Raw,
    /// Base64 of the JSON text.
    Base64,
}

/// The shape a body arrived in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BodyShape {
    /// The envelope, if any.
    pub envelope: Envelope,
    /// The JSON's encoding (inside the envelope, if any).
    pub encoding: Encoding,
}

impl BodyShape {
    /// A short stable name for logs and metrics: `raw`, `base64`,
    /// `topic-xml+raw`, `topic-json+base64`...
    pub fn as_str(&self) -> &'static str {
        match (self.envelope, self.encoding) {
            (Envelope::None, Encoding::Raw) => "raw",
            (Envelope::None, Encoding::Base64) => "base64",
            (Envelope::TopicXml, Encoding::Raw) => "topic-xml+raw",
            (Envelope::TopicXml, Encoding::Base64) => "topic-xml+base64",
            (Envelope::TopicJson, Encoding::Raw) => "topic-json+raw",
            (Envelope::TopicJson, Encoding::Base64) => "topic-json+base64",
        }
    }
}

impl fmt::Display for BodyShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which body shapes have been seen, so each is logged at INFO once.
#[derive(Debug, Default)]
pub(crate) struct ShapesSeen(AtomicU64);

impl ShapesSeen {
    pub(crate) const fn new() -> Self {
        ShapesSeen(AtomicU64::new(0))
    }

    /// Whether `shape` is seen for the first time.
    pub(crate) fn first(&self, shape: BodyShape) -> bool {
        let envelope = match shape.envelope {
            Envelope::None => 0,
            Envelope::TopicXml => 1,
            Envelope::TopicJson => 2,
        };
        let encoding = match shape.encoding {
            Encoding::Raw => 0,
            Encoding::Base64 => 1,
        };
        let bit = 1u64 << (envelope * 2 + encoding);
        self.0.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }
}

/// A decoded body: the JSON text, the shape it came in, and the topic
/// envelope's fields when there was one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedBody {
    /// The JSON object's text, ready for `serde_json::from_str`.
    pub json: String,
    /// The shape it arrived in.
    pub shape: BodyShape,
    /// The topic envelope, when the body had one.
    pub notification: Option<Notification>,
}

/// Decode a body in any of the known shapes into the JSON object it carries.
pub fn decode_body(body: &str) -> Result<DecodedBody> {
    let trimmed = body.trim();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
        if Notification::is_json_envelope(&value) {
            let notification = Notification::from_json(trimmed)?;
            return unwrap_envelope(notification, Envelope::TopicJson);
        }
        if value.is_object() {
            return Ok(DecodedBody {
                json: trimmed.to_owned(),
                shape: BodyShape {
                    envelope: Envelope::None,
                    encoding: Encoding::Raw,
                },
                notification: None,
            });
        }
        return Err(Error::UndecodableBody(format!(
            "JSON, but not an object ({} bytes)",
            body.len()
        )));
    }
    if trimmed.starts_with('<') && xml::root_element(trimmed).as_deref() == Some("Notification") {
        let notification = Notification::from_xml(trimmed)?;
        return unwrap_envelope(notification, Envelope::TopicXml);
    }
    match decode_json(trimmed) {
        Some((json, encoding)) => Ok(DecodedBody {
            json,
            shape: BodyShape {
                envelope: Envelope::None,
                encoding,
            },
            notification: None,
        }),
        None => Err(Error::UndecodableBody(format!(
            "neither a JSON object, base64 of one, nor a topic envelope ({} bytes)",
            body.len()
        ))),
    }
}

pub(crate) fn unwrap_envelope(
    notification: Notification,
    envelope: Envelope,
) -> Result<DecodedBody> {
    notification.check_md5()?;
    match decode_json(notification.message.trim()) {
        Some((json, encoding)) => Ok(DecodedBody {
            json,
            shape: BodyShape { envelope, encoding },
            notification: Some(notification),
        }),
        None => Err(Error::UndecodableBody(format!(
            "a topic envelope whose message is neither a JSON object nor base64 of one ({} bytes)",
            notification.message.len()
        ))),
    }
}

/// A JSON object as is, or base64 of one.
fn decode_json(text: &str) -> Option<(String, Encoding)> {
    if is_json_object(text) {
        return Some((text.to_owned(), Encoding::Raw));
    }
    // Some encoders wrap base64 at 76 columns.
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = STANDARD.decode(compact.as_bytes()).ok()?;
    let decoded = String::from_utf8(bytes).ok()?;
    let decoded = decoded.trim();
    is_json_object(decoded).then(|| (decoded.to_owned(), Encoding::Base64))
}

fn is_json_object(text: &str) -> bool {
    text.starts_with('{')
        && serde_json::from_str::<serde_json::Value>(text).is_ok_and(|v| v.is_object())
}

impl ReceivedMessage {
    /// Check `MessageBodyMD5` against the body as received. A message with
    /// no MD5 (some emulators) passes.
    pub fn check_md5(&self) -> Result<()> {
        if self.body_md5.is_empty() {
            return Ok(());
        }
        let actual = signature::message_md5(self.body.as_bytes());
        if actual.eq_ignore_ascii_case(self.body_md5.trim()) {
            Ok(())
        } else {
            Err(Error::Md5Mismatch {
                expected: self.body_md5.clone(),
                actual,
            })
        }
    }

    /// Check the MD5, then decode the body (see [`decode_body`]).
    pub fn decode(&self) -> Result<DecodedBody> {
        self.check_md5()?;
        decode_body(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Notification;

    const REQUEST: &str = r#"{"RequestType":"Create","RequestId":"r-1","ResponseURL":"https://ros.example/cb?sig=x","ResourceProperties":{"Secret":"hunter2"}}"#;

    fn b64(s: &str) -> String {
        STANDARD.encode(s)
    }

    #[test]
    fn raw_json_is_taken_as_is() {
        let d = decode_body(&format!("  {REQUEST}\n")).expect("decode");
        assert_eq!(d.json, REQUEST);
        assert_eq!(d.shape.as_str(), "raw");
        assert!(d.notification.is_none());
    }

    #[test]
    fn base64_json_is_decoded() {
        let d = decode_body(&b64(REQUEST)).expect("decode");
        assert_eq!(d.json, REQUEST);
        assert_eq!(d.shape.to_string(), "base64");
    }

    #[test]
    fn base64_wrapped_at_76_columns_is_decoded() {
        let encoded = b64(REQUEST);
        let wrapped: Vec<String> = encoded
            .as_bytes()
            .chunks(76)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        let d = decode_body(&wrapped.join("\r\n")).expect("decode");
        assert_eq!(d.json, REQUEST);
        assert_eq!(d.shape.encoding, Encoding::Base64);
    }

    #[test]
    fn topic_envelopes_around_either_encoding_are_unwrapped() {
        for (inner, encoding) in [
            (REQUEST.to_owned(), Encoding::Raw),
            (b64(REQUEST), Encoding::Base64),
        ] {
            let n = Notification::new("ros-topic", "m-1", inner);
            let xml = decode_body(&n.to_xml().expect("xml")).expect("xml envelope");
            assert_eq!(xml.json, REQUEST);
            assert_eq!(
                xml.shape,
                BodyShape {
                    envelope: Envelope::TopicXml,
                    encoding
                }
            );
            assert_eq!(
                xml.notification.as_ref().map(|n| n.topic_name.as_str()),
                Some("ros-topic")
            );
            let json = decode_body(&n.to_json()).expect("json envelope");
            assert_eq!(json.json, REQUEST);
            assert_eq!(
                json.shape,
                BodyShape {
                    envelope: Envelope::TopicJson,
                    encoding
                }
            );
        }
        assert_eq!(
            decode_body(&Notification::new("t", "m", b64(REQUEST)).to_json())
                .expect("decode")
                .shape
                .as_str(),
            "topic-json+base64"
        );
    }

    #[test]
    fn an_envelope_with_a_wrong_md5_is_refused() {
        let mut n = Notification::new("t", "m", REQUEST);
        n.message_md5 = "00000000000000000000000000000000".into();
        assert!(matches!(
            decode_body(&n.to_json()),
            Err(Error::Md5Mismatch { .. })
        ));
        assert!(matches!(
            decode_body(&n.to_xml().expect("xml")),
            Err(Error::Md5Mismatch { .. })
        ));
    }

    #[test]
    fn bodies_in_no_known_shape_are_refused_without_quoting_them() {
        for body in [
            "hunter2 is not json",
            "\"a json string\"",
            "1234",
            &b64("hunter2 is not json"),
            "<Other>hunter2</Other>",
            "",
        ] {
            let err = decode_body(body).expect_err(body);
            assert!(matches!(err, Error::UndecodableBody(_)), "{body}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let envelope = Notification::new("t", "m", "hunter2 plain text").to_json();
        let err = decode_body(&envelope).expect_err("not json inside");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn message_md5_mismatch_is_caught_before_decoding() {
        let mut m = ReceivedMessage::new("m-1", "h-1", REQUEST);
        assert!(m.check_md5().is_ok());
        assert_eq!(m.decode().expect("decode").json, REQUEST);
        // SMQ's MD5 may come in lower case.
        m.body_md5 = m.body_md5.to_lowercase();
        assert!(m.check_md5().is_ok());
        m.body.push(' ');
        let err = m.decode().expect_err("mismatch");
        assert!(matches!(err, Error::Md5Mismatch { .. }), "{err}");
    }
}
