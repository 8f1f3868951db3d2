//! A topic notification: the envelope SMQ wraps around a published message
//! when it pushes it to an HTTP endpoint or a subscribed queue.
//!
//! The subscription's `NotifyContentFormat` picks the shape:
//! - `XML`: `<Notification>` with `TopicOwner`, `TopicName`, `Subscriber`,
//!   `SubscriptionName`, `MessageId`, `Message`, `MessageMD5`, `MessageTag`,
//!   `PublishTime`;
//! - `JSON`: the same fields as a JSON object (`PublishTime` a string);
//! - `SIMPLIFIED`: the message alone (an HTTP push then carries the id and
//!   tag in `x-mns-message-id` and `x-mns-message-tag`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};
use crate::signature;
use crate::xml;

/// The subscription's `NotifyContentFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotifyFormat {
    /// `<Notification>` XML.
    Xml,
    /// The same fields as JSON.
    Json,
    /// The message alone.
    Simplified,
}

impl NotifyFormat {
    /// The name SMQ uses.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyFormat::Xml => "XML",
            NotifyFormat::Json => "JSON",
            NotifyFormat::Simplified => "SIMPLIFIED",
        }
    }
}

impl fmt::Display for NotifyFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A topic notification's fields. In a SIMPLIFIED push only `message` (and
/// what the headers carry) is known; the rest are empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Notification {
    /// The account that owns the topic.
    #[serde(default)]
    pub topic_owner: String,
    /// The topic.
    #[serde(default)]
    pub topic_name: String,
    /// The subscriber's account.
    #[serde(default)]
    pub subscriber: String,
    /// The subscription.
    #[serde(default)]
    pub subscription_name: String,
    /// The published message's id.
    #[serde(default)]
    pub message_id: String,
    /// The published message, as published (raw or base64, by the
    /// publisher's choice).
    #[serde(default)]
    pub message: String,
    /// Upper-case hex MD5 of `message`; empty when unknown.
    #[serde(rename = "MessageMD5", default)]
    pub message_md5: String,
    /// The publisher's tag, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_tag: Option<String>,
    /// When it was published (epoch ms).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "publish_time_out",
        deserialize_with = "publish_time_in"
    )]
    pub publish_time: Option<u64>,
}

/// JSON carries PublishTime as a string; accept a number too.
fn publish_time_in<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<u64>, D::Error> {
    #[derive(Clone, Copy)]
    struct Time;
    impl<'de> serde::de::Visitor<'de> for Time {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("epoch milliseconds as a number or a string")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Self::Value, E> {
            u64::try_from(v).map(Some).map_err(E::custom)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
            let v = v.trim();
            if v.is_empty() {
                Ok(None)
            } else {
                v.parse().map(Some).map_err(E::custom)
            }
        }
        fn visit_none<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<Self::Value, E> {
            Ok(None)
        }
        // quick-xml hands an element's content over as a map whose text is
        // under `$text`.
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut out = None;
            while let Some((key, value)) = map.next_entry::<String, String>()? {
                if key == "$text" {
                    out = self.visit_str::<A::Error>(&value)?;
                }
            }
            Ok(out)
        }
        fn visit_some<D2: Deserializer<'de>>(
            self,
            d: D2,
        ) -> std::result::Result<Self::Value, D2::Error> {
            d.deserialize_any(Time)
        }
    }
    d.deserialize_option(Time)
}

fn publish_time_out<S: Serializer>(t: &Option<u64>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_string()),
        None => s.serialize_none(),
    }
}

/// The XML form adds the namespace attribute.
#[derive(Serialize)]
struct NotificationXmlOut<'a> {
    #[serde(rename = "@xmlns")]
    xmlns: xml::Xmlns,
    #[serde(flatten)]
    notification: &'a Notification,
}

impl Notification {
    /// A notification of `message` on `topic_name`, its MD5 computed.
    pub fn new(
        topic_name: impl Into<String>,
        message_id: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        Notification {
            topic_name: topic_name.into(),
            message_id: message_id.into(),
            message_md5: signature::message_md5(message.as_bytes()),
            message,
            ..Notification::default()
        }
    }

    /// Read the XML format.
    pub fn from_xml(text: &str) -> Result<Self> {
        xml::from_document("Notification", text)
    }

    /// Read the JSON format.
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text)
            .map_err(|e| Error::Protocol(format!("topic notification JSON: {e}")))
    }

    /// Write the XML format.
    pub fn to_xml(&self) -> Result<String> {
        xml::to_document(
            "Notification",
            &NotificationXmlOut {
                xmlns: xml::Xmlns,
                notification: self,
            },
        )
    }

    /// Write the JSON format.
    pub fn to_json(&self) -> String {
        // A struct of strings and numbers always serializes.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Write the given format (SIMPLIFIED is the message alone).
    pub fn to_format(&self, format: NotifyFormat) -> Result<String> {
        match format {
            NotifyFormat::Xml => self.to_xml(),
            NotifyFormat::Json => Ok(self.to_json()),
            NotifyFormat::Simplified => Ok(self.message.clone()),
        }
    }

    /// Check `MessageMD5` against the message, when the envelope has one.
    pub fn check_md5(&self) -> Result<()> {
        if self.message_md5.is_empty() {
            return Ok(());
        }
        let actual = signature::message_md5(self.message.as_bytes());
        if actual.eq_ignore_ascii_case(self.message_md5.trim()) {
            Ok(())
        } else {
            Err(Error::Md5Mismatch {
                expected: self.message_md5.clone(),
                actual,
            })
        }
    }

    /// Whether a parsed JSON object looks like a topic envelope rather than
    /// a request: it has `Message` as a string and the topic's identity.
    pub(crate) fn is_json_envelope(value: &serde_json::Value) -> bool {
        let Some(obj) = value.as_object() else {
            return false;
        };
        obj.get("Message").is_some_and(serde_json::Value::is_string)
            && (obj.contains_key("TopicOwner") || obj.contains_key("TopicName"))
            && obj.contains_key("MessageId")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Notification {
        Notification {
            topic_owner: "1234567890".into(),
            topic_name: "ros-events".into(),
            subscriber: "1234567890".into(),
            subscription_name: "provider".into(),
            message_tag: Some("important".into()),
            publish_time: Some(1449556920975),
            ..Notification::new(
                "ros-events",
                "6CC4D900CA59A2CD-1-15180534A8F-20000",
                "{\"RequestType\":\"Create\"} <&>",
            )
        }
    }

    #[test]
    fn xml_round_trips() {
        let n = sample();
        let text = n.to_xml().expect("xml");
        assert!(
            text.contains("<PublishTime>1449556920975</PublishTime>"),
            "{text}"
        );
        assert!(
            text.contains("xmlns=\"http://mns.aliyuncs.com/doc/v1/\""),
            "{text}"
        );
        assert_eq!(Notification::from_xml(&text).expect("read"), n);
    }

    #[test]
    fn json_round_trips_with_publish_time_as_a_string() {
        let n = sample();
        let text = n.to_json();
        assert!(text.contains("\"PublishTime\":\"1449556920975\""), "{text}");
        assert!(text.contains("\"MessageMD5\":"), "{text}");
        assert_eq!(Notification::from_json(&text).expect("read"), n);
    }

    #[test]
    fn reads_the_documented_json_example() {
        let text = r#"{
            "TopicOwner":"TopicOwner",
            "TopicName":"TopicName",
            "Subscriber":"Subscriber",
            "SubscriptionName":"SubscriptionName",
            "MessageId":"6CC4D900CA59A2CD-1-15180534A8F-20000",
            "Message":"xxxxx",
            "MessageMD5":"F1E92841751D795AB325861034B5",
            "MessageTag":"important",
            "PublishTime":"1449556920975"
        }"#;
        let n = Notification::from_json(text).expect("read");
        assert_eq!(n.message, "xxxxx");
        assert_eq!(n.publish_time, Some(1449556920975));
        assert!(Notification::is_json_envelope(
            &serde_json::from_str(text).expect("json")
        ));
        // The doc's MD5 is masked, so it does not match.
        assert!(matches!(n.check_md5(), Err(Error::Md5Mismatch { .. })));
    }

    #[test]
    fn a_numeric_publish_time_is_accepted() {
        let n = Notification::from_json(
            r#"{"TopicName":"t","MessageId":"m","Message":"x","PublishTime":17}"#,
        )
        .expect("read");
        assert_eq!(n.publish_time, Some(17));
    }

    #[test]
    fn md5_check_catches_a_changed_message() {
        let mut n = sample();
        assert!(n.check_md5().is_ok());
        n.message.push('!');
        assert!(matches!(n.check_md5(), Err(Error::Md5Mismatch { .. })));
        n.message_md5.clear();
        assert!(n.check_md5().is_ok(), "no MD5 to check");
    }

    #[test]
    fn a_request_is_not_mistaken_for_an_envelope() {
        let request =
            serde_json::json!({"RequestType": "Create", "RequestId": "r", "Message": "x"});
        assert!(!Notification::is_json_envelope(&request));
    }
}
