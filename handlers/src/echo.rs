//! `Custom::Echo`: a wiring check for a new deployment.
//!
//! Data is the resource's properties, so `Fn::GetAtt [Echo, Key]` returns what
//! the template passed in. Three properties try the failure paths end to end:
//!
//! | property | effect |
//! |---|---|
//! | `FailWith` | every operation fails with this text |
//! | `PanicWith` | the handler panics with this text (the runtime answers FAILED) |
//! | `SleepSeconds` | the handler waits this long first, to try deadlines, shutdown and restarts (at most 3600) |
//!
//! ```yaml
//! Echo:
//!   Type: Custom::Echo
//!   Properties:
//!     ServiceToken: web:https://provider.example.com/
//!     Parameters:
//!       Greeting: hello
//! ```

use std::time::Duration;

use serde_json::{Map, Value};

use stackhook::handler::{
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

/// The longest `SleepSeconds` honoured.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Sleep, panic or fail when the properties ask for it.
async fn check(properties: &Map<String, Value>) -> Result<(), RequestedFailure> {
    let sleep = properties.get("SleepSeconds").and_then(|v| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    if let Some(seconds) = sleep.filter(|s| s.is_finite() && *s > 0.0) {
        tokio::time::sleep(Duration::from_secs_f64(seconds).min(MAX_SLEEP)).await;
    }
    if let Some(text) = properties.get("PanicWith").filter(|v| !v.is_null()) {
        panic!("{}", text_of(text));
    }
    match properties.get("FailWith") {
        None | Some(Value::Null) => Ok(()),
        Some(value) => Err(RequestedFailure(text_of(value))),
    }
}

impl Handler for Echo {
    type Properties = Map<String, Value>;
    type Error = RequestedFailure;
    const IDEMPOTENT: bool = true;

    async fn create(
        &self,
        request: CreateRequest<Self::Properties>,
    ) -> Result<Created, Self::Error> {
        check(&request.properties).await?;
        Ok(Created::new().with_data_map(request.properties))
    }

    async fn update(
        &self,
        request: UpdateRequest<Self::Properties>,
    ) -> Result<Updated, Self::Error> {
        check(&request.properties).await?;
        Ok(Updated::new().with_data_map(request.properties))
    }

    async fn delete(
        &self,
        request: DeleteRequest<Self::Properties>,
    ) -> Result<Deleted, Self::Error> {
        check(&request.properties).await?;
        Ok(Deleted::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stackhook::handler::RequestContext;
    use stackhook::request::{Request, RequestType};

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
