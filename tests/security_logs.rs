//! No secret reaches a log line: presigned callback queries, the auth token,
//! the SignKey, signature values and sensitive properties, across success,
//! handler failure, delivery failure, refused callbacks, unauthenticated and
//! malformed input. Logs are captured at TRACE (with `log` records bridged)
//! on a current-thread runtime, so the server's tasks log into the capture.

mod security_support;

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{Value, json};
use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::security::signature::{SignatureScheme, format_date};
use stackhook::sink::CallbackSink;
use stackhook::{Config, Router, Sensitive};

use security_support::{Logs, Server, client, start_with};

const PRESIGNED: &str = "PRESIGNED-SECRET-7f3a";
const TOKEN: &str = "TOKEN-SECRET-4b9c-long-enough";
const SIGN_KEY: &str = "SIGNKEY-SECRET-1d2e";
const SIGN_URL: &str = "https://provider.example.com/";
const PASSWORD: &str = "PROPERTY-SECRET-9e8d";
const PIN: &str = "PIN-SECRET-5a6b";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LoginProps {
    user: String,
    password: Sensitive<String>,
    #[serde(default)]
    #[allow(dead_code)]
    pin: Option<Sensitive<u32>>,
    #[serde(default)]
    fail_with: Option<String>,
}

/// A handler that logs its properties with `Debug` and returns the password
/// as Data, as a careless handler might.
struct Login;

impl Handler for Login {
    type Properties = LoginProps;
    type Error = std::io::Error;

    async fn create(&self, req: CreateRequest<LoginProps>) -> Result<Created, Self::Error> {
        tracing::info!(properties = ?req.properties, "creating login");
        if let Some(reason) = &req.properties.fail_with {
            return Err(std::io::Error::other(reason.clone()));
        }
        Ok(Created::with_id(req.properties.user.clone())
            .with_data("Password", req.properties.password))
    }
    async fn update(&self, _req: UpdateRequest<LoginProps>) -> Result<Updated, Self::Error> {
        Ok(Updated::new())
    }
    async fn delete(&self, _req: DeleteRequest<LoginProps>) -> Result<Deleted, Self::Error> {
        Ok(Deleted::new())
    }
}

fn config() -> Config {
    Config::for_local_testing()
        .auth_token(TOKEN)
        .sign_key(SIGN_KEY, SIGN_URL)
        .sensitive_properties(["Password", "Pin"])
        .timeout(Duration::from_secs(2))
}

async fn server() -> Server {
    start_with(Router::new().route("Custom::Login", Login), config()).await
}

fn login(callback: &str, properties: Value) -> Value {
    json!({
        "RequestType": "Create", "RequestId": format!("req-{}", rand_suffix()), "ResponseURL": callback,
        "IntranetResponseURL": callback, "ResourceType": "Custom::Login", "LogicalResourceId": "Login",
        "StackId": "stack-1", "ResourceProperties": properties
    })
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn sign(body: &Value) -> Value {
    SignatureScheme::new(SIGN_KEY, SIGN_URL).signed_body(body, &format_date(SystemTime::now()))
}

async fn post(server: &Server, path: &str, body: &Value, token: Option<&str>) -> u16 {
    let mut req = client().post(server.url(path)).json(body);
    if let Some(token) = token {
        req = req.header("X-Stackhook-Token", token);
    }
    req.send().await.expect("reachable").status().as_u16()
}

fn assert_clean(logs: &Logs, extra: &[&str]) {
    let text = logs.text();
    assert!(
        text.contains("request body"),
        "TRACE body logging was exercised:\n{text}"
    );
    for secret in [PRESIGNED, TOKEN, SIGN_KEY, PASSWORD, PIN]
        .iter()
        .chain(extra)
    {
        assert!(
            !text.contains(secret),
            "`{secret}` leaked into the logs:\n{text}"
        );
    }
}

fn install() -> (Logs, tracing::subscriber::DefaultGuard) {
    let _ = tracing_log::LogTracer::init();
    let logs = Logs::default();
    let guard = logs.install();
    (logs, guard)
}

#[tokio::test(flavor = "current_thread")]
async fn success_and_handler_failure_leak_nothing() {
    let (logs, _guard) = install();
    let sink = CallbackSink::start().await.expect("sink");
    let server = server().await;
    let callback = format!("http://{}/cb?Signature={PRESIGNED}", sink.addr());

    let ok = sign(&login(
        &callback,
        json!({"User": "alice", "Password": PASSWORD}),
    ));
    let signature = ok["Signature"]["Value"]
        .as_str()
        .expect("value")
        .to_string();
    assert_eq!(post(&server, "/", &ok, Some(TOKEN)).await, 200);
    let failing = sign(&login(
        &callback,
        json!({"User": "bob", "Password": PASSWORD, "FailWith": "no such user"}),
    ));
    assert_eq!(post(&server, "/", &failing, Some(TOKEN)).await, 200);

    let calls = sink.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(calls.len(), 2);
    // ROS still gets the value it needs.
    let success = calls
        .iter()
        .filter_map(|c| c.response())
        .find(|r| r.status.as_str() == "SUCCESS")
        .expect("SUCCESS");
    assert_eq!(success.data.expect("data")["Password"], PASSWORD);
    server.stop().await;
    assert_clean(&logs, &[&signature]);
    assert!(logs.text().contains("[redacted]"), "{}", logs.text());
}

#[tokio::test(flavor = "current_thread")]
async fn sync_path_and_sensitive_type_errors_leak_nothing() {
    let (logs, _guard) = install();
    let sink = CallbackSink::start().await.expect("sink");
    let server = server().await;
    let callback = format!("http://{}/cb?Signature={PRESIGNED}", sink.addr());
    let wrong_type = sign(&login(
        &callback,
        json!({"User": "carol", "Password": PASSWORD, "Pin": PIN}),
    ));
    let reply = client()
        .post(server.url("/sync"))
        .header("X-Stackhook-Token", TOKEN)
        .json(&wrong_type)
        .send()
        .await
        .expect("reachable");
    let answer: Value = reply.json().await.expect("json");
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(
        !answer.to_string().contains(PIN),
        "the Reason does not quote the value: {answer}"
    );
    server.stop().await;
    assert_clean(&logs, &[]);
}

#[tokio::test(flavor = "current_thread")]
async fn delivery_failures_and_refused_callbacks_leak_nothing() {
    let (logs, _guard) = install();
    let sink = CallbackSink::start().await.expect("sink");
    sink.script([403, 403]);
    let server = server().await;
    let body = json!({"User": "dave", "Password": PASSWORD});

    // The callback refuses the answer.
    let refused = format!("http://{}/cb?Signature={PRESIGNED}", sink.addr());
    assert_eq!(
        post(&server, "/invoke", &login(&refused, body.clone()), None).await,
        404
    );
    // Nobody listens there: connection errors until the deadline.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        format!("http://{addr}/cb?Signature={PRESIGNED}")
    };
    assert_eq!(
        post(&server, "/invoke", &login(&closed, body.clone()), None).await,
        404
    );
    // The callback guard refuses the host.
    let guarded = format!("http://user:{PRESIGNED}@127.0.0.9:1/cb?Signature={PRESIGNED}");
    assert_eq!(
        post(&server, "/invoke", &login(&guarded, body), None).await,
        404
    );
    server.stop().await;
    assert_clean(&logs, &[]);
    assert!(
        logs.text().contains("127.0.0.9"),
        "the refused host is named"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn unauthenticated_and_malformed_input_leak_nothing() {
    let (logs, _guard) = install();
    let sink = CallbackSink::start().await.expect("sink");
    let server = server().await;
    let callback = format!("http://{}/cb?Signature={PRESIGNED}", sink.addr());
    let good = login(&callback, json!({"User": "erin", "Password": PASSWORD}));

    // Wrong token, token in the query, forged signature.
    assert_eq!(post(&server, "/", &good, Some("wrong-token")).await, 401);
    let reply = client()
        .post(server.url(&format!("/?token={TOKEN}x")))
        .json(&good)
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 401);
    let mut forged = sign(&good);
    forged["Signature"]["Value"] = "0000000000000000000000000000000000000000".into();
    assert_eq!(post(&server, "/", &forged, Some(TOKEN)).await, 401);

    // Malformed but authenticated: FAILED goes to the callback.
    let mut broken = good.clone();
    broken["RequestType"] = "Replace".into();
    assert_eq!(post(&server, "/", &sign(&broken), Some(TOKEN)).await, 400);
    // Not JSON at all, with secrets inside.
    let garbage = format!("ResponseURL={callback}&Password={PASSWORD}&token={TOKEN}");
    let reply = client()
        .post(server.url("/"))
        .header("X-Stackhook-Token", TOKEN)
        .body(garbage)
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 401, "unsigned");
    let reply = client()
        .post(server.url("/invoke"))
        .body(format!("{{\"Password\": \"{PASSWORD}\""))
        .send()
        .await
        .expect("reachable");
    assert_eq!(reply.status(), 404);

    assert_eq!(sink.wait_for(1, Duration::from_secs(10)).await.len(), 1);
    server.stop().await;
    assert_clean(&logs, &["x-stackhook-token: T"]);
}
