//! What the API commands (`ros`, `oos`, `rfs`) print and how they exit.
//!
//! Success: the answer as JSON on stdout, a one-line summary on stderr,
//! exit 0. Failure: `{"Error": {...}}` on stdout, `error: …` on stderr, and an
//! exit code that tells the kinds apart (see [`EXIT_CODES`]).

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde::Serialize;
use serde_json::{Value, json};
use stackhook_cloud::Error;
use stackhook_cloud::RetryPolicy;
use stackhook_cloud::retry::{DEFAULT_BASE_DELAY, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY};

/// Usage or validation error: fix the command line.
pub(crate) const EXIT_USAGE: u8 = 2;
/// Credentials missing or unusable.
pub(crate) const EXIT_CREDENTIALS: u8 = 3;
/// The service answered with an error that retrying will not fix.
pub(crate) const EXIT_API: u8 = 4;
/// The service was unreachable, answered unreadably, or kept answering with
/// transient errors until the retries ran out.
pub(crate) const EXIT_TRANSPORT: u8 = 5;

/// The output and exit-code text every API command's `--help` ends with.
macro_rules! exit_codes_help {
    () => {
        "Output: the answer as JSON on stdout, a one-line summary on stderr.\n\n\
Exit codes:\n  \
0  success\n  \
2  usage or validation error (nothing was sent)\n  \
3  credentials missing or unusable\n  \
4  API error answer (code, message and request id in the JSON)\n  \
5  transport failure, unreadable answer, or retries exhausted on a transient error"
    };
}
pub(crate) use exit_codes_help;

/// The exit codes, for `--help`.
pub(crate) const EXIT_CODES: &str = exit_codes_help!();

/// `--help` tail of the Alibaba commands: credentials, output, exit codes.
pub(crate) const ALIBABA_HELP: &str = concat!(
    "Credentials: ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET, optional ALIBABA_CLOUD_SECURITY_TOKEN.\n\n",
    exit_codes_help!()
);

/// Retry flags shared by every API command.
#[derive(Args)]
pub(crate) struct RetryArgs {
    /// Attempts in all, the first included; throttling, 5xx and transport errors are retried with exponential backoff and jitter
    #[arg(long, default_value_t = DEFAULT_MAX_ATTEMPTS, value_parser = clap::value_parser!(u32).range(1..=10))]
    max_attempts: u32,
}

impl RetryArgs {
    pub(crate) fn policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.max_attempts, DEFAULT_BASE_DELAY, DEFAULT_MAX_DELAY)
    }
}

/// Seconds each attempt may take.
pub(crate) fn attempt_timeout(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

/// Print the outcome and pick the exit code.
pub(crate) fn finish<T: Serialize>(
    result: Result<T, Error>,
    summary: impl FnOnce(&T) -> String,
) -> ExitCode {
    match result {
        Ok(answer) => {
            match serde_json::to_string_pretty(&answer) {
                Ok(text) => println!("{text}"),
                Err(error) => eprintln!("error: cannot print the answer: {error}"),
            }
            eprintln!("{}", summary(&answer));
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

/// Report `error` and return its exit code.
pub(crate) fn fail(error: &Error) -> ExitCode {
    let (code, detail) = describe(error);
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({ "Error": detail })).unwrap_or_default()
    );
    eprintln!(
        "error: {}",
        stackhook::error::error_chain(error as &(dyn std::error::Error + 'static))
    );
    ExitCode::from(code)
}

fn describe(error: &Error) -> (u8, Value) {
    match error {
        Error::Validation { field, message } => (
            EXIT_USAGE,
            json!({"Kind": "validation", "Field": field, "Message": message}),
        ),
        Error::Credentials(message) => (
            EXIT_CREDENTIALS,
            json!({"Kind": "credentials", "Message": message}),
        ),
        Error::Api(api) => (
            if api.retryable {
                EXIT_TRANSPORT
            } else {
                EXIT_API
            },
            json!({
                "Kind": "api",
                "Service": api.service,
                "HttpStatus": api.http_status,
                "Code": api.code,
                "Message": api.message,
                "RequestId": api.request_id,
                "HostId": api.host_id,
                "Recommend": api.recommend,
                "Details": api.details.iter().map(|(c, m)| json!({"Code": c, "Message": m})).collect::<Vec<_>>(),
                "Retryable": api.retryable,
                "Attempts": api.attempts,
            }),
        ),
        Error::Transport { service, message } => (
            EXIT_TRANSPORT,
            json!({"Kind": "transport", "Service": service, "Message": message}),
        ),
        other => (
            EXIT_USAGE,
            json!({"Kind": "other", "Message": other.to_string()}),
        ),
    }
}
