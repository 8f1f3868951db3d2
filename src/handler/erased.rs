//! Type erasure for handlers, done once, here.
//!
//! The router stores handlers of different `Properties` types side by side as
//! `Arc<dyn DynHandler>`. Decoding the properties happens inside, so decode
//! errors come back with the JSON path that failed.

use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{
    CreateRequest, DeleteRequest, Handler, PollRequest, Progress, RequestContext, UpdateRequest,
};
use crate::error::{BoxError, Error};
use crate::request::RequestType;
use crate::response::Data;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the runtime asks of a handler. The properties are decoded into the
/// handler's type straight from the request the context shares, without an
/// intermediate copy.
#[derive(Debug, Clone)]
pub(crate) enum Operation {
    Create,
    Update { physical_resource_id: String },
    Delete { physical_resource_id: String },
}

/// A poll of long-running work; the properties come from the context's
/// request, as for [`Operation`].
#[derive(Debug, Clone)]
pub(crate) struct PollInput {
    pub(crate) physical_resource_id: Option<String>,
    pub(crate) state: Value,
    pub(crate) attempt: u32,
}

/// The request's properties, decoded for a handler.
fn properties_of<P: DeserializeOwned>(context: &RequestContext) -> Result<P, Failure> {
    decode(&context.request().resource_properties, "ResourceProperties")
}

/// The request's old properties (an Update's), decoded for a handler; empty
/// when ROS sent none.
fn old_properties_of<P: DeserializeOwned>(context: &RequestContext) -> Result<P, Failure> {
    match &context.request().old_resource_properties {
        Some(old) => decode(old, "OldResourceProperties"),
        None => decode(&Map::new(), "OldResourceProperties"),
    }
}
/// A handler's success, whatever the operation.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Outcome {
    /// Only a Create may choose an id.
    pub(crate) physical_resource_id: Option<String>,
    pub(crate) data: Data,
    /// Set when the work is not finished.
    pub(crate) progress: Option<Progress>,
}

/// Why a handler did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The properties did not decode; the handler never ran.
    Properties(Error),
    /// The handler returned an error.
    Handler(BoxError),
}

pub(crate) trait DynHandler: Send + Sync + 'static {
    fn call(
        &self,
        operation: Operation,
        context: RequestContext,
    ) -> BoxFuture<'_, Result<Outcome, Failure>>;
    fn poll(
        &self,
        poll: PollInput,
        context: RequestContext,
    ) -> BoxFuture<'_, Result<Outcome, Failure>>;
    fn on_timeout(&self, poll: PollInput, context: RequestContext) -> BoxFuture<'_, ()>;
    fn idempotent(&self) -> bool;
}

fn handler_failure<E: Into<BoxError>>(error: E) -> Failure {
    Failure::Handler(error.into())
}

/// Decode a poll's properties for `H`.
fn poll_request<P: DeserializeOwned>(
    poll: PollInput,
    context: RequestContext,
) -> Result<PollRequest<P>, Failure> {
    let properties = properties_of(&context)?;
    let old_properties = match context.request_type() {
        RequestType::Update => Some(old_properties_of(&context)?),
        _ => None,
    };
    Ok(PollRequest::new(
        poll.physical_resource_id,
        properties,
        old_properties,
        poll.state,
        poll.attempt,
        context,
    ))
}

impl<H: Handler> DynHandler for H {
    fn call(
        &self,
        operation: Operation,
        context: RequestContext,
    ) -> BoxFuture<'_, Result<Outcome, Failure>> {
        Box::pin(async move {
            match operation {
                Operation::Create => {
                    let properties = properties_of(&context)?;
                    let created = self
                        .create(CreateRequest::new(properties, context))
                        .await
                        .map_err(handler_failure)?;
                    Ok(Outcome {
                        physical_resource_id: created.physical_resource_id,
                        data: created.data,
                        progress: created.progress,
                    })
                }
                Operation::Update {
                    physical_resource_id,
                } => {
                    let properties = properties_of(&context)?;
                    let old_properties = old_properties_of(&context)?;
                    let updated = self
                        .update(UpdateRequest::new(
                            physical_resource_id,
                            properties,
                            old_properties,
                            context,
                        ))
                        .await
                        .map_err(handler_failure)?;
                    Ok(Outcome {
                        physical_resource_id: None,
                        data: updated.data,
                        progress: updated.progress,
                    })
                }
                Operation::Delete {
                    physical_resource_id,
                } => {
                    let properties = properties_of(&context)?;
                    let deleted = self
                        .delete(DeleteRequest::new(
                            physical_resource_id,
                            properties,
                            context,
                        ))
                        .await
                        .map_err(handler_failure)?;
                    Ok(Outcome {
                        progress: deleted.progress,
                        ..Outcome::default()
                    })
                }
            }
        })
    }

    fn poll(
        &self,
        poll: PollInput,
        context: RequestContext,
    ) -> BoxFuture<'_, Result<Outcome, Failure>> {
        Box::pin(async move {
            let request = poll_request(poll, context)?;
            let polled = Handler::poll(self, request)
                .await
                .map_err(handler_failure)?;
            if let Some(reason) = polled.failure {
                return Err(Failure::Handler(reason.into()));
            }
            Ok(Outcome {
                physical_resource_id: polled.physical_resource_id,
                data: polled.data,
                progress: polled.progress,
            })
        })
    }

    fn on_timeout(&self, poll: PollInput, context: RequestContext) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            match poll_request(poll, context) {
                Ok(request) => Handler::on_timeout(self, request).await,
                Err(_) => tracing::debug!("on_timeout skipped: the properties do not decode"),
            }
        })
    }

    fn idempotent(&self) -> bool {
        H::IDEMPOTENT
    }
}

/// Decode a property map into `P`, naming the JSON path on failure.
pub(crate) fn decode<P: DeserializeOwned>(
    properties: &Map<String, Value>,
    field: &'static str,
) -> Result<P, Failure> {
    // Tracking the path costs on every field; it is needed only to explain
    // a failure, so a map that decodes is decoded without it.
    if let Ok(decoded) = P::deserialize(properties) {
        return Ok(decoded);
    }
    serde_path_to_error::deserialize(properties).map_err(|e| {
        let path = e.path().to_string();
        Failure::Properties(Error::Properties {
            field,
            path: if path == "." {
                "(top level)".into()
            } else {
                path
            },
            message: e.into_inner().to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    #[allow(dead_code)]
    struct Props {
        tags: Vec<Tag>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "PascalCase")]
    #[allow(dead_code)]
    struct Tag {
        key: String,
        #[serde(with = "crate::lenient")]
        count: u32,
    }

    #[test]
    fn decode_error_names_the_path() {
        let map =
            serde_json::json!({"Tags": [{"Key": "a", "Count": 1}, {"Key": "b", "Count": "x"}]});
        let Value::Object(map) = map else {
            unreachable!()
        };
        let Err(Failure::Properties(err)) = decode::<Props>(&map, "ResourceProperties") else {
            panic!("expected a properties failure");
        };
        let text = err.to_string();
        assert!(text.contains("Tags[1].Count"), "{text}");
        assert!(text.contains("ResourceProperties"), "{text}");
    }

    #[test]
    fn decode_missing_field_names_it() {
        let Err(Failure::Properties(err)) = decode::<Props>(&Map::new(), "ResourceProperties")
        else {
            panic!("expected a properties failure");
        };
        assert!(err.to_string().contains("Tags"), "{err}");
    }
}
