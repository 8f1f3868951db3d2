//! `stackhook mock-api`: the ROS, OOS and RFS API emulator, and the SMQ
//! queue emulator, in the foreground.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use stackhook_testing::api_emulator::ApiEmulator;
use tokio::sync::broadcast::error::RecvError;

#[derive(Args)]
pub(crate) struct MockApiArgs {
    /// Address to listen on; keep it on loopback (port 0 picks a free one)
    #[arg(
        long,
        env = "STACKHOOK_MOCK_API_LISTEN",
        default_value = "127.0.0.1:9100"
    )]
    listen: SocketAddr,
    /// Alibaba AccessKeyId the emulator accepts (ROS, OOS)
    #[arg(
        long,
        env = "ALIBABA_CLOUD_ACCESS_KEY_ID",
        default_value = ApiEmulator::ALIBABA_ACCESS_KEY_ID,
        requires = "access_key_secret"
    )]
    access_key_id: String,
    /// Alibaba AccessKeySecret for --access-key-id
    #[arg(
        long,
        env = "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        default_value = ApiEmulator::ALIBABA_ACCESS_KEY_SECRET,
        hide_env_values = true
    )]
    access_key_secret: String,
    /// Huawei AK the emulator accepts (RFS)
    #[arg(
        long,
        env = "HUAWEICLOUD_SDK_AK",
        default_value = ApiEmulator::HUAWEI_AK,
        requires = "huawei_sk"
    )]
    huawei_ak: String,
    /// Huawei SK for --huawei-ak
    #[arg(
        long,
        env = "HUAWEICLOUD_SDK_SK",
        default_value = ApiEmulator::HUAWEI_SK,
        hide_env_values = true
    )]
    huawei_sk: String,
    /// Address of the SMQ (MNS) queue emulator; point `stackhook serve
    /// --mns-endpoint` at it (port 0 picks a free one)
    #[arg(
        long,
        env = "STACKHOOK_MOCK_SMQ_LISTEN",
        default_value = "127.0.0.1:9101"
    )]
    smq_listen: SocketAddr,
    /// Queues the SMQ emulator starts with (signed with the Alibaba key above)
    #[arg(
        long = "smq-queue",
        env = "STACKHOOK_MOCK_SMQ_QUEUES",
        value_delimiter = ',',
        default_value = "ros-requests"
    )]
    smq_queues: Vec<String>,
}

pub(crate) async fn run(args: MockApiArgs) -> anyhow::Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let emulator = ApiEmulator::builder()
        .alibaba_key(&args.access_key_id, &args.access_key_secret)
        .huawei_key(&args.huawei_ak, &args.huawei_sk)
        .start_on(listener)
        .context("starting the API emulator")?;
    let smq_listener = tokio::net::TcpListener::bind(args.smq_listen)
        .await
        .with_context(|| format!("binding {}", args.smq_listen))?;
    let smq = stackhook_smq::emulator::Emulator::serve(
        smq_listener,
        stackhook_smq::Credentials::new(&args.access_key_id, &args.access_key_secret),
    )
    .context("starting the SMQ emulator")?;
    for queue in &args.smq_queues {
        smq.create_queue(queue, stackhook_smq::emulator::QueueConfig::default());
    }
    let mut calls = emulator.subscribe();
    emit(&format!(
        "stackhook mock-api listening on {} · Alibaba key {} (ROS, OOS: POST /) · Huawei AK {} (RFS: /v1/…)",
        emulator.url(),
        args.access_key_id,
        args.huawei_ak
    ));
    for queue in &args.smq_queues {
        emit(&format!(
            "SMQ emulator on {} · queue acs:mns:cn-hangzhou:1234567890:queues/{queue} \
             (stackhook serve --mns-queue that --mns-endpoint {})",
            smq.endpoint(),
            smq.endpoint()
        ));
    }
    let shutdown = super::serve::shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            call = calls.recv() => match call {
                Ok(call) => emit(&call.summary()),
                Err(RecvError::Lagged(missed)) => emit(&format!("… {missed} call(s) not shown")),
                Err(RecvError::Closed) => break,
            },
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Print a line; a closed stdout (`| head`) must not stop the emulator.
fn emit(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stdout(), "{line}");
}
