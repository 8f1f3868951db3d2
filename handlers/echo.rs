//! `Custom::Echo`: a wiring check for a new deployment.
//!
//! Data is the resource's properties, so `Fn::GetAtt [Echo, Key]` returns what
//! the template passed in. A property `FailWith` makes every operation fail
//! with that text, to try the FAILED path end to end.
//!
//! ```yaml
//! Echo:
//!   Type: Custom::Echo
//!   Properties:
//!     ServiceToken: web:https://provider.example.com/
//!     Parameters:
//!       Greeting: hello
//! ```

use serde_json::{Map, Value};

use crate::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};

/// Echoes its properties back as Data.
#[derive(Debug, Clone, Copy, Default)]
pub struct Echo;

impl Echo {
    /// The resource type `stackhook serve` routes to this handler.
    pub const RESOURCE_TYPE: &'static str = "Custom::Echo";
}

/// The failure a `FailWith` property asks for.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct RequestedFailure(String);

/// Fail when the properties ask for it.
fn check(properties: &Map<String, Value>) -> Result<(), RequestedFailure> {
    match properties.get("FailWith") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(text)) => Err(RequestedFailure(text.clone())),
        Some(other) => Err(RequestedFailure(other.to_string())),
    }
}

impl Handler for Echo {
    type Properties = Map<String, Value>;
    type Error = RequestedFailure;

    async fn create(
        &self,
        request: CreateRequest<Self::Properties>,
    ) -> Result<Created, Self::Error> {
        check(&request.properties)?;
        Ok(Created::new().with_data_map(request.properties))
    }

    async fn update(
        &self,
        request: UpdateRequest<Self::Properties>,
    ) -> Result<Updated, Self::Error> {
        check(&request.properties)?;
        Ok(Updated::new().with_data_map(request.properties))
    }

    async fn delete(
        &self,
        request: DeleteRequest<Self::Properties>,
    ) -> Result<Deleted, Self::Error> {
        check(&request.properties)?;
        Ok(Deleted::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::RequestContext;
    use crate::request::{Request, RequestType};

    fn context() -> RequestContext {
        let request = Request::new(RequestType::Create, Echo::RESOURCE_TYPE, "E", "s", "r");
        RequestContext::new(&request, tokio::time::Instant::now())
    }

    fn props(json: Value) -> Map<String, Value> {
        match json {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[tokio::test]
    async fn data_is_the_properties() {
        let p = props(serde_json::json!({"Greeting": "hello", "N": 3}));
        let created = Echo
            .create(CreateRequest::new(p.clone(), context()))
            .await
            .expect("ok");
        assert_eq!(created.data(), &p);
    }

    #[tokio::test]
    async fn fail_with_fails_every_operation() {
        let p = props(serde_json::json!({"FailWith": "no thanks"}));
        let err = Echo
            .update(UpdateRequest::new("id", p.clone(), Map::new(), context()))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "no thanks");
        assert!(
            Echo.delete(DeleteRequest::new("id", p, context()))
                .await
                .is_err()
        );
    }
}
