//! `stackhook invoke`: act as ROS once.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use stackhook::{RequestType, Status};
use stackhook_testing::invoke::Overrides;

#[derive(Args)]
pub(crate) struct InvokeArgs {
    /// A request file in ROS's format (see fixtures/)
    fixture: PathBuf,
    /// The provider's URL: http://HOST:PORT/ (async), /sync or /invoke
    #[arg(long, default_value = "http://127.0.0.1:9000/")]
    url: String,
    /// Seconds to wait for the answer
    #[arg(long, default_value_t = 70)]
    wait: u64,
    /// Send the request as this type instead of the file's (Update without --old-properties sends the file's properties as the old ones)
    #[arg(long = "type", value_enum, value_name = "TYPE", ignore_case = true)]
    request_type: Option<TypeArg>,
    /// Replace ResourceProperties: a JSON object or a file holding one
    #[arg(long, value_name = "FILE_OR_JSON")]
    properties: Option<String>,
    /// Set OldResourceProperties (for Update): a JSON object or a file holding one
    #[arg(long, value_name = "FILE_OR_JSON")]
    old_properties: Option<String>,
    /// Set PhysicalResourceId (needed for Update and Delete)
    #[arg(long, value_name = "ID")]
    physical_id: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
#[value(rename_all = "PascalCase")]
enum TypeArg {
    Create,
    Update,
    Delete,
}

impl From<TypeArg> for RequestType {
    fn from(value: TypeArg) -> Self {
        match value {
            TypeArg::Create => RequestType::Create,
            TypeArg::Update => RequestType::Update,
            TypeArg::Delete => RequestType::Delete,
        }
    }
}

pub(crate) async fn run(args: InvokeArgs) -> anyhow::Result<ExitCode> {
    let mut body = std::fs::read(&args.fixture)
        .with_context(|| format!("reading {}", args.fixture.display()))?;
    let overrides = Overrides {
        request_type: args.request_type.map(RequestType::from),
        properties: args.properties.clone(),
        old_properties: args.old_properties.clone(),
        physical_resource_id: args.physical_id.clone(),
    };
    if !overrides.is_empty() {
        let mut value: serde_json::Value = serde_json::from_slice(&body).with_context(|| {
            format!(
                "{} is not JSON, so it cannot be changed",
                args.fixture.display()
            )
        })?;
        overrides
            .apply(&mut value)
            .context("applying the overrides")?;
        body = value.to_string().into_bytes();
    }
    let outcome =
        stackhook_testing::invoke::invoke(&body, &args.url, Duration::from_secs(args.wait))
            .await
            .context("invoking the provider")?;
    eprintln!(
        "provider replied HTTP {}: {}",
        outcome.reply_status,
        String::from_utf8_lossy(&outcome.reply_body)
    );
    let Some(answer) = outcome.answer else {
        if let Some(refusal) = refused_callbacks(outcome.reply_status, &outcome.reply_body) {
            // Nothing will come: say why at once, with the flag that helps.
            eprintln!("error: the provider refused this request's callback URLs: {refusal}");
            eprintln!("{ALLOW_HINT}");
            return Ok(ExitCode::from(2));
        }
        eprintln!(
            "no answer arrived within {} s ({} callback(s) received)",
            args.wait,
            outcome.callbacks.len()
        );
        return Ok(ExitCode::from(2));
    };
    let channel = if outcome.sync {
        "in the reply".to_string()
    } else {
        outcome
            .callbacks
            .first()
            .map(|c| {
                format!(
                    "by {} to {}",
                    c.method,
                    c.uri.split('?').next().unwrap_or("/")
                )
            })
            .unwrap_or_default()
    };
    println!("{}", serde_json::to_string_pretty(&answer)?);
    eprintln!("{} {channel}", answer.status.as_str());
    Ok(match answer.status {
        Status::Success => ExitCode::SUCCESS,
        Status::Failed => ExitCode::from(1),
    })
}

/// How to let a provider answer `invoke`'s local callback receiver.
const ALLOW_HINT: &str = "`stackhook invoke` takes the answer on 127.0.0.1, which a provider \
refuses unless it is allowed: start it with `--callback-allow 127.0.0.1` \
(or STACKHOOK_CALLBACK_ALLOW=127.0.0.1)";

/// The provider's reason, when it refused the request (4xx) because its
/// callback guard refused every callback URL: the error names the callback
/// allow list, or says the callback was refused.
fn refused_callbacks(status: u16, body: &[u8]) -> Option<String> {
    if !(400..500).contains(&status) {
        return None;
    }
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => value
            .get("error")
            .and_then(|e| e.as_str())
            .map_or_else(|| value.to_string(), String::from),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let lower = text.to_ascii_lowercase();
    (lower.contains("callback refused") || lower.contains("callback allow list")).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_of_every_callback_url_is_recognised() {
        let body = br#"{"error":"callback refused: public URL: callback address `127.0.0.1` is an IP literal not listed in the callback allow list"}"#;
        let refusal = refused_callbacks(403, body).expect("recognised");
        assert!(
            refusal.starts_with("callback refused: public URL"),
            "{refusal}"
        );
        assert_eq!(
            refused_callbacks(400, b"callback host `x` is not on the callback allow list")
                .as_deref(),
            Some("callback host `x` is not on the callback allow list")
        );
    }

    #[test]
    fn other_replies_are_not_a_callback_refusal() {
        assert_eq!(
            refused_callbacks(200, br#"{"error":"callback refused"}"#),
            None
        );
        assert_eq!(
            refused_callbacks(503, br#"{"error":"callback refused"}"#),
            None
        );
        assert_eq!(
            refused_callbacks(401, br#"{"error":"missing token"}"#),
            None
        );
        assert_eq!(refused_callbacks(400, b"not json"), None);
    }

    #[test]
    fn the_hint_names_the_flag_and_its_variable() {
        assert!(ALLOW_HINT.contains("--callback-allow 127.0.0.1"));
        assert!(ALLOW_HINT.contains("STACKHOOK_CALLBACK_ALLOW=127.0.0.1"));
    }
}
