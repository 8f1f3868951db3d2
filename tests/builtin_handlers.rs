//! The built-in handlers end to end, through the real server: every request
//! type of `Custom::Echo` and `Custom::RandomString`, the generic type, and
//! Deletes that have nothing to delete.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Map, Value, json};
use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::router::GENERIC_RESOURCE_TYPE;
use stackhook::sink::CallbackSink;
use stackhook::{Response, Router, Status};
use stackhook_handlers::{Echo, RandomString};

use common::*;

/// The two ways ROS gets an answer over HTTP.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `POST /`, answer at the callback.
    Async,
    /// `POST /sync`, answer in the reply.
    Sync,
}

async fn answer(server: &TestServer, sink: &CallbackSink, body: &Value, mode: Mode) -> Response {
    match mode {
        Mode::Async => run_async(server, sink, body).await,
        Mode::Sync => {
            let reply = post_json(&server.url("/sync"), body).await;
            assert_eq!(reply.status, 200);
            reply.answer()
        }
    }
}

/// The `Value` in a RandomString answer.
fn value_of(answer: &Response) -> String {
    answer
        .data
        .as_ref()
        .and_then(|d| d.get("Value"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no Value in {answer:?}"))
        .to_string()
}

#[tokio::test]
async fn echo_create_update_delete_in_both_modes() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    for mode in [Mode::Async, Mode::Sync] {
        let create = fixture_for("echo-create.json", &sink);
        let created = answer(&server, &sink, &create, mode).await;
        assert_eq!(created.status, Status::Success, "{mode:?}");
        assert_eq!(
            Value::Object(created.data.clone().expect("data")),
            create["ResourceProperties"]
        );
        // A generated id: stack id, logical id, a part derived from the request.
        let id = created.physical_resource_id.clone();
        assert!(
            id.starts_with("4a6c9851-3b0f-4f5f-b4ca-a14bf691e2d7-Greeter-"),
            "{id}"
        );
        assert_identifiers_copied(&created, &create);

        let mut update = fixture_for("echo-update.json", &sink);
        update["PhysicalResourceId"] = json!(id);
        let updated = answer(&server, &sink, &update, mode).await;
        assert_eq!(updated.status, Status::Success, "{mode:?}");
        assert_eq!(updated.physical_resource_id, id);
        assert_eq!(
            Value::Object(updated.data.clone().expect("data")),
            update["ResourceProperties"]
        );

        let mut delete = fixture_for("echo-delete.json", &sink);
        delete["PhysicalResourceId"] = json!(id);
        let deleted = answer(&server, &sink, &delete, mode).await;
        assert_eq!(deleted.status, Status::Success, "{mode:?}");
        assert_eq!(deleted.physical_resource_id, id);
        assert!(deleted.data.is_none());
    }
    server.stop().await;
}

#[tokio::test]
async fn echo_fail_with_fails_every_operation() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    for file in ["echo-create.json", "echo-update.json", "echo-delete.json"] {
        let mut body = fixture_for(file, &sink);
        body["ResourceProperties"]["FailWith"] = json!("stop here");
        let answer = run_async(&server, &sink, &body).await;
        assert_eq!(answer.status, Status::Failed, "{file}");
        assert_eq!(answer.reason.as_deref(), Some("stop here"));
    }
    server.stop().await;
}

#[tokio::test]
async fn random_string_lifecycle_keeps_its_id_and_value() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    for mode in [Mode::Async, Mode::Sync] {
        let create = fixture_for("random-string-create.json", &sink);
        let created = answer(&server, &sink, &create, mode).await;
        assert_eq!(created.status, Status::Success, "{mode:?}: {created:?}");
        let id = created.physical_resource_id.clone();
        let value = value_of(&created);
        assert_eq!(value.len(), 24);
        assert!(
            value.chars().any(|c| !c.is_ascii_alphanumeric()),
            "no symbol: {value}"
        );

        // Only `Purpose` changed: the same value.
        let mut unchanged = fixture_for("random-string-update-unchanged.json", &sink);
        unchanged["PhysicalResourceId"] = json!(id);
        let same = answer(&server, &sink, &unchanged, mode).await;
        assert_eq!(same.status, Status::Success);
        assert_eq!(same.physical_resource_id, id);
        assert_eq!(value_of(&same), value);

        // Length changed: a new value, the same id.
        let mut longer = fixture_for("random-string-update-length.json", &sink);
        longer["PhysicalResourceId"] = json!(id);
        let changed = answer(&server, &sink, &longer, mode).await;
        assert_eq!(changed.status, Status::Success);
        assert_eq!(changed.physical_resource_id, id);
        let new_value = value_of(&changed);
        assert_eq!(new_value.len(), 32);
        assert_ne!(new_value, value);

        // A rollback sends the old properties again: the old value returns.
        let mut rollback = fixture_for("random-string-update-length.json", &sink);
        rollback["PhysicalResourceId"] = json!(id);
        rollback["ResourceProperties"] = longer["OldResourceProperties"].clone();
        rollback["OldResourceProperties"] = longer["ResourceProperties"].clone();
        let rolled_back = answer(&server, &sink, &rollback, mode).await;
        assert_eq!(value_of(&rolled_back), value);

        let mut delete = fixture_for("random-string-delete.json", &sink);
        delete["PhysicalResourceId"] = json!(id);
        let deleted = answer(&server, &sink, &delete, mode).await;
        assert_eq!(deleted.status, Status::Success);
        assert_eq!(deleted.physical_resource_id, id);
    }
    server.stop().await;
}

#[tokio::test]
async fn random_string_value_survives_a_restart_with_the_same_key() {
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("random-string-update-unchanged.json", &sink);
    let first = TestServer::builtin().await;
    let before = answer(&first, &sink, &body, Mode::Sync).await;
    first.stop().await;
    let second = TestServer::builtin().await;
    let after = answer(&second, &sink, &body, Mode::Sync).await;
    second.stop().await;
    assert_eq!(value_of(&before), value_of(&after));
    assert_eq!(after.physical_resource_id, body["PhysicalResourceId"]);
}

#[tokio::test]
async fn random_string_reads_numbers_and_booleans_from_strings() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("numbers-as-strings.json", &sink);
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Success, "{answer:?}");
    let value = value_of(&answer);
    assert_eq!(value.len(), 40);
    // Upper "false", Lower "true", Digits "True", Symbols "FALSE".
    assert!(
        value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
        "{value}"
    );
    server.stop().await;
}

#[tokio::test]
async fn random_string_refuses_impossible_properties() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("random-string-create.json", &sink);
    body["ResourceProperties"]["Length"] = json!("0");
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Failed);
    assert!(
        answer
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("Length"))
    );
    let mut body = fixture_for("random-string-create.json", &sink);
    body["ResourceProperties"]["Length"] = json!("many");
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    assert!(
        reason.contains("ResourceProperties") && reason.contains("Length"),
        "{reason}"
    );
    server.stop().await;
}

#[tokio::test]
async fn other_request_shapes_are_answered() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    for file in [
        "signed-request.json",
        "account-ids-as-numbers.json",
        "inner-response-url.json",
    ] {
        let body = fixture_for(file, &sink);
        let answer = run_async(&server, &sink, &body).await;
        assert_eq!(answer.status, Status::Success, "{file}: {answer:?}");
        assert_identifiers_copied(&answer, &body);
        // ROS's Signature is not a property and does not leak into Data.
        assert!(!answer.data.unwrap_or_default().contains_key("Signature"));
    }
    server.stop().await;
}

#[tokio::test]
async fn generic_type_is_served_when_mapped_to_a_handler() {
    let router = Router::new()
        .route(Echo::RESOURCE_TYPE, Echo)
        .route(RandomString::RESOURCE_TYPE, RandomString::new(TEST_KEY))
        .alias(GENERIC_RESOURCE_TYPE, Echo::RESOURCE_TYPE);
    let server = TestServer::start(router, test_config()).await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("generic-create.json", &sink);
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Success, "{answer:?}");
    assert_eq!(
        Value::Object(answer.data.expect("data")),
        body["ResourceProperties"]
    );
    server.stop().await;
}

#[tokio::test]
async fn generic_type_without_a_mapping_fails_naming_the_routed_types() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("generic-create.json", &sink);
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Failed);
    let reason = answer.reason.as_deref().expect("reason");
    assert!(
        reason.contains(GENERIC_RESOURCE_TYPE)
            && reason.contains("Custom::Echo,")
            && reason.contains("Custom::RandomString"),
        "{reason}"
    );
    server.stop().await;
}

/// Counts the calls that reach it.
#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

impl Handler for Counted {
    type Properties = Map<String, Value>;
    type Error = std::io::Error;

    async fn create(&self, _: CreateRequest<Self::Properties>) -> Result<Created, Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Created::new())
    }
    async fn update(&self, _: UpdateRequest<Self::Properties>) -> Result<Updated, Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Updated::new())
    }
    async fn delete(&self, _: DeleteRequest<Self::Properties>) -> Result<Deleted, Self::Error> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Deleted::new())
    }
}

#[tokio::test]
async fn delete_of_nothing_succeeds_without_calling_the_handler() {
    let counted = Counted::default();
    let server = TestServer::start(
        Router::new().route("Custom::Counted", counted.clone()),
        test_config(),
    )
    .await;
    let sink = CallbackSink::start().await.expect("sink");
    let marker = fixture("delete-after-failed-create.json")["PhysicalResourceId"].clone();
    for id in [
        Some(marker.clone()),
        Some(json!("")),
        Some(json!("   ")),
        None,
    ] {
        let mut body = fixture_for("delete-after-failed-create.json", &sink);
        body["ResourceType"] = json!("Custom::Counted");
        match &id {
            Some(id) => body["PhysicalResourceId"] = id.clone(),
            None => {
                body.as_object_mut()
                    .expect("object")
                    .remove("PhysicalResourceId");
            }
        }
        let answer = run_async(&server, &sink, &body).await;
        assert_eq!(answer.status, Status::Success, "{id:?}");
        assert!(!answer.physical_resource_id.trim().is_empty(), "{id:?}");
        if id.as_ref() == Some(&marker) {
            assert_eq!(answer.physical_resource_id, marker);
        }
        assert_identifiers_copied(&answer, &body);
    }
    assert_eq!(counted.0.load(Ordering::SeqCst), 0, "the handler ran");
    // A real id does reach it.
    let mut real = fixture_for("echo-delete.json", &sink);
    real["ResourceType"] = json!("Custom::Counted");
    run_async(&server, &sink, &real).await;
    assert_eq!(counted.0.load(Ordering::SeqCst), 1);
    server.stop().await;
}

#[tokio::test]
async fn delete_after_failed_create_fixture_succeeds_even_though_echo_would_fail() {
    // The fixture's properties carry FailWith: had Echo run, it would fail.
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let body = fixture_for("delete-after-failed-create.json", &sink);
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Success, "{answer:?}");
    assert_eq!(answer.physical_resource_id, body["PhysicalResourceId"]);
    server.stop().await;
}

#[tokio::test]
async fn update_of_a_failed_create_fails_clearly() {
    let server = TestServer::builtin().await;
    let sink = CallbackSink::start().await.expect("sink");
    let mut body = fixture_for("echo-update.json", &sink);
    body["PhysicalResourceId"] =
        fixture("delete-after-failed-create.json")["PhysicalResourceId"].clone();
    let answer = run_async(&server, &sink, &body).await;
    assert_eq!(answer.status, Status::Failed);
    assert!(
        answer
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("Create failed")),
        "{answer:?}"
    );
    assert_eq!(answer.physical_resource_id, body["PhysicalResourceId"]);
    server.stop().await;
}
