//! SMQ's XML bodies, both ways: the client writes requests and reads
//! answers, the emulator does the reverse. One set of types keeps the two
//! honest with each other.
//!
//! Element names are SMQ's (namespace `http://mns.aliyuncs.com/doc/v1/`);
//! unknown elements are ignored on reading, so a newer server's extra fields
//! do not break the client.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Error, Result};

/// SMQ's XML namespace.
pub(crate) const NAMESPACE: &str = "http://mns.aliyuncs.com/doc/v1/";
const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Writes SMQ's namespace as the `xmlns` attribute; absent when reading.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Xmlns;

impl Serialize for Xmlns {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(NAMESPACE)
    }
}

/// A `<Message>` as ReceiveMessage and BatchReceiveMessage return it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ReceivedXml {
    #[serde(rename = "@xmlns", skip_deserializing)]
    pub(crate) xmlns: Xmlns,
    pub(crate) message_id: String,
    pub(crate) receipt_handle: String,
    #[serde(rename = "MessageBodyMD5")]
    pub(crate) message_body_md5: String,
    #[serde(default)]
    pub(crate) message_body: String,
    #[serde(default)]
    pub(crate) enqueue_time: u64,
    #[serde(default)]
    pub(crate) next_visible_time: u64,
    #[serde(default)]
    pub(crate) first_dequeue_time: u64,
    #[serde(default)]
    pub(crate) dequeue_count: u32,
    #[serde(default)]
    pub(crate) priority: u32,
}

/// `<Messages>` from BatchReceiveMessage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReceivedBatchXml {
    #[serde(rename = "@xmlns", skip_deserializing)]
    pub(crate) xmlns: Xmlns,
    #[serde(rename = "Message", default)]
    pub(crate) messages: Vec<ReceivedXml>,
}

/// The SendMessage request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SendXml {
    #[serde(rename = "@xmlns", skip_deserializing)]
    pub(crate) xmlns: Xmlns,
    pub(crate) message_body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) delay_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) priority: Option<u32>,
}

/// The SendMessage answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct SentXml {
    #[serde(rename = "@xmlns", skip_deserializing)]
    pub(crate) xmlns: Xmlns,
    pub(crate) message_id: String,
    #[serde(rename = "MessageBodyMD5")]
    pub(crate) message_body_md5: String,
}

/// The BatchDeleteMessage request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ReceiptHandlesXml {
    #[serde(rename = "@xmlns", skip_deserializing)]
    pub(crate) xmlns: Xmlns,
    #[serde(rename = "ReceiptHandle", default)]
    pub(crate) handles: Vec<String>,
}

/// One failed entry of a BatchDeleteMessage answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct BatchErrorXml {
    pub(crate) error_code: String,
    #[serde(default)]
    pub(crate) error_message: String,
    #[serde(default)]
    pub(crate) receipt_handle: String,
}

/// `<Errors>`: the answer to a BatchDeleteMessage that failed in part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BatchErrorsXml {
    #[serde(rename = "@xmlns", skip_deserializing)]
    pub(crate) xmlns: Xmlns,
    #[serde(rename = "Error", default)]
    pub(crate) errors: Vec<BatchErrorXml>,
}

/// The ChangeMessageVisibility answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ChangeVisibilityXml {
    #[serde(rename = "@xmlns", skip_deserializing)]
    pub(crate) xmlns: Xmlns,
    pub(crate) receipt_handle: String,
    pub(crate) next_visible_time: u64,
}

/// The GetQueueAttributes answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QueueXml {
    #[serde(rename = "@xmlns", skip_deserializing)]
    pub(crate) xmlns: Xmlns,
    #[serde(default)]
    pub(crate) queue_name: String,
    #[serde(default)]
    pub(crate) create_time: u64,
    #[serde(default)]
    pub(crate) last_modify_time: u64,
    #[serde(default)]
    pub(crate) delay_seconds: u32,
    #[serde(default)]
    pub(crate) maximum_message_size: u32,
    #[serde(default)]
    pub(crate) message_retention_period: u32,
    #[serde(default)]
    pub(crate) visibility_timeout: u32,
    #[serde(default)]
    pub(crate) polling_wait_seconds: u32,
    #[serde(default)]
    pub(crate) active_messages: u64,
    #[serde(default)]
    pub(crate) inactive_messages: u64,
    #[serde(default)]
    pub(crate) delay_messages: u64,
    #[serde(default)]
    pub(crate) logging_enabled: bool,
}

/// `<Error>`: every failed call's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ErrorXml {
    #[serde(rename = "@xmlns", skip_deserializing)]
    pub(crate) xmlns: Xmlns,
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) request_id: String,
    #[serde(default)]
    pub(crate) host_id: String,
}

/// Write `value` as a document with root element `root`.
pub(crate) fn to_document<T: Serialize>(root: &str, value: &T) -> Result<String> {
    let mut out = String::from(DECLARATION);
    quick_xml::se::to_writer_with_root(&mut out, root, value)
        .map_err(|e| Error::Protocol(format!("cannot write <{root}>: {e}")))?;
    Ok(out)
}

/// Read a document whose root element must be `root`.
pub(crate) fn from_document<T: DeserializeOwned>(root: &str, text: &str) -> Result<T> {
    match root_element(text) {
        Some(found) if found == root => {}
        Some(found) => {
            return Err(Error::Protocol(format!("expected <{root}>, got <{found}>")));
        }
        None => {
            return Err(Error::Protocol(format!(
                "expected <{root}>, got no XML element"
            )));
        }
    }
    quick_xml::de::from_str(text).map_err(|e| Error::Protocol(format!("cannot read <{root}>: {e}")))
}

/// The local name of a document's root element, skipping the declaration,
/// comments and whitespace.
pub(crate) fn root_element(text: &str) -> Option<String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(text);
    loop {
        match reader.read_event() {
            Ok(Event::Start(e)) | Ok(Event::Empty(e)) => {
                return Some(String::from_utf8_lossy(e.local_name().as_ref()).into_owned());
            }
            Ok(Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_)) => {}
            Ok(Event::Text(t)) if t.iter().all(u8::is_ascii_whitespace) => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received() -> ReceivedXml {
        ReceivedXml {
            xmlns: Xmlns,
            message_id: "5F290C926D472878-2-14D9529A8FA-200000001".into(),
            receipt_handle: "1-ODU4OTkzNDU5My0xNDM1MTk3NjAwLTItNg==".into(),
            message_body_md5: "C5DD56A39F5F7BB8B3337C6D11B6D8C7".into(),
            message_body: "  {\"a\": \"<b> & 'c'\"}\n".into(),
            enqueue_time: 1250700979248,
            next_visible_time: 1250700799348,
            first_dequeue_time: 1250700779318,
            dequeue_count: 1,
            priority: 8,
        }
    }

    #[test]
    fn received_batch_round_trips_with_body_whitespace_and_escapes_intact() {
        let batch = ReceivedBatchXml {
            xmlns: Xmlns,
            messages: vec![received(), received()],
        };
        let text = to_document("Messages", &batch).expect("write");
        assert!(
            text.contains("xmlns=\"http://mns.aliyuncs.com/doc/v1/\""),
            "{text}"
        );
        let back: ReceivedBatchXml = from_document("Messages", &text).expect("read");
        assert_eq!(back, batch);
    }

    #[test]
    fn reads_the_documented_receive_answer() {
        let text = r#"<?xml version="1.0" encoding="UTF-8"?>
<Message xmlns="http://mns.aliyuncs.com/doc/v1/">
  <MessageId>5fea7756-0ea4-451a-a703-a558b933e274</MessageId>
  <ReceiptHandle>MbZj6wDWli+QEauMZc8ZRv37sIW2iJKq3M9Mx/KSbkJ0</ReceiptHandle>
  <MessageBodyMD5>fafb00f5732ab283681e124bf8747ed1</MessageBodyMD5>
  <MessageBody>This is a test message</MessageBody>
  <EnqueueTime>1250700979248</EnqueueTime>
  <NextVisibleTime>1250700799348</NextVisibleTime>
  <FirstDequeueTime>1250700779318</FirstDequeueTime>
  <DequeueCount>1</DequeueCount>
  <Priority>8</Priority>
  <SomethingNew>ignored</SomethingNew>
</Message>"#;
        let m: ReceivedXml = from_document("Message", text).expect("read");
        assert_eq!(
            m.receipt_handle,
            "MbZj6wDWli+QEauMZc8ZRv37sIW2iJKq3M9Mx/KSbkJ0"
        );
        assert_eq!(m.message_body, "This is a test message");
        assert_eq!(m.dequeue_count, 1);
        assert_eq!(m.enqueue_time, 1250700979248);
    }

    #[test]
    fn an_empty_batch_reads_as_no_messages() {
        let m: ReceivedBatchXml = from_document(
            "Messages",
            "<Messages xmlns=\"http://mns.aliyuncs.com/doc/v1/\"></Messages>",
        )
        .expect("read");
        assert!(m.messages.is_empty());
    }

    #[test]
    fn send_request_round_trips() {
        let send = SendXml {
            xmlns: Xmlns,
            message_body: "{\"RequestType\":\"Create\"}".into(),
            delay_seconds: Some(0),
            priority: None,
        };
        let text = to_document("Message", &send).expect("write");
        let back: SendXml = from_document("Message", &text).expect("read");
        assert_eq!(back, send);
    }

    #[test]
    fn error_and_batch_errors_round_trip() {
        let err = ErrorXml {
            xmlns: Xmlns,
            code: "QueueNotExist".into(),
            message: "The queue name you provided is not exist.".into(),
            request_id: "5FD0A8E1".into(),
            host_id: "http://1.mns.cn-hangzhou.aliyuncs.com".into(),
        };
        let text = to_document("Error", &err).expect("write");
        assert_eq!(
            from_document::<ErrorXml>("Error", &text).expect("read"),
            err
        );

        let errors = BatchErrorsXml {
            xmlns: Xmlns,
            errors: vec![BatchErrorXml {
                error_code: "ReceiptHandleError".into(),
                error_message: "The receipt handle you provided is not valid.".into(),
                receipt_handle: "1-abc+/=".into(),
            }],
        };
        let text = to_document("Errors", &errors).expect("write");
        assert_eq!(
            from_document::<BatchErrorsXml>("Errors", &text).expect("read"),
            errors
        );
    }

    #[test]
    fn other_answers_round_trip() {
        let handles = ReceiptHandlesXml {
            xmlns: Xmlns,
            handles: vec!["a+b".into(), "c/d=".into()],
        };
        let text = to_document("ReceiptHandles", &handles).expect("write");
        assert_eq!(
            from_document::<ReceiptHandlesXml>("ReceiptHandles", &text).expect("read"),
            handles
        );

        let vis = ChangeVisibilityXml {
            xmlns: Xmlns,
            receipt_handle: "h2".into(),
            next_visible_time: 1,
        };
        let text = to_document("ChangeVisibility", &vis).expect("write");
        assert_eq!(
            from_document::<ChangeVisibilityXml>("ChangeVisibility", &text).expect("read"),
            vis
        );

        let sent = SentXml {
            xmlns: Xmlns,
            message_id: "m".into(),
            message_body_md5: "ABC".into(),
        };
        let text = to_document("Message", &sent).expect("write");
        assert_eq!(
            from_document::<SentXml>("Message", &text).expect("read"),
            sent
        );

        let queue = QueueXml {
            xmlns: Xmlns,
            queue_name: "q".into(),
            create_time: 1,
            last_modify_time: 2,
            delay_seconds: 0,
            maximum_message_size: 65536,
            message_retention_period: 345600,
            visibility_timeout: 30,
            polling_wait_seconds: 0,
            active_messages: 3,
            inactive_messages: 1,
            delay_messages: 0,
            logging_enabled: false,
        };
        let text = to_document("Queue", &queue).expect("write");
        assert_eq!(
            from_document::<QueueXml>("Queue", &text).expect("read"),
            queue
        );
    }

    #[test]
    fn a_document_with_another_root_is_refused() {
        let err = from_document::<ReceivedXml>("Message", "<Error><Code>X</Code></Error>")
            .expect_err("root");
        assert!(
            err.to_string().contains("expected <Message>, got <Error>"),
            "{err}"
        );
        assert!(from_document::<ReceivedXml>("Message", "not xml").is_err());
    }
}
