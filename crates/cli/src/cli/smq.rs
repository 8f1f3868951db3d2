//! `stackhook serve`'s SMQ (MNS) intakes: a queue consumer beside the HTTP
//! receiver (`--mns-queue`), and topic HTTP pushes on the receiver
//! (`--mns-push-path`).

use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use stackhook::server::Extras;
use stackhook_cloud::credentials::AlibabaCredentials;
use stackhook_smq::push::{CertUrlPolicy, PushVerifier};
use stackhook_smq::{Arn, Consumer, ConsumerConfig, Credentials};

#[derive(Args)]
pub(crate) struct SmqArgs {
    /// Consume ROS requests from this SMQ (MNS) queue, beside the HTTP
    /// receiver: acs:mns:REGION:ACCOUNT:queues/NAME, the queue ServiceToken.
    /// Credentials: ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET
    /// and optional ALIBABA_CLOUD_SECURITY_TOKEN (set by Function Compute for
    /// its role)
    #[arg(long, env = "STACKHOOK_MNS_QUEUE")]
    mns_queue: Option<String>,
    /// The SMQ endpoint instead of the ARN's https://ACCOUNT.mns.REGION.aliyuncs.com:
    /// the internal (VPC) endpoint, or a local emulator
    #[arg(long, env = "STACKHOOK_MNS_ENDPOINT", requires = "mns_queue")]
    mns_endpoint: Option<String>,
    /// Concurrent long polls on the queue (1 to 64)
    #[arg(long, env = "STACKHOOK_MNS_RECEIVERS", default_value_t = stackhook_smq::DEFAULT_RECEIVERS)]
    mns_receivers: usize,
    /// Delete a poison message (not a ROS request, no usable callback) at this delivery
    #[arg(long, env = "STACKHOOK_MNS_POISON_LIMIT", default_value_t = stackhook_smq::DEFAULT_POISON_DEQUEUE_LIMIT)]
    mns_poison_limit: u32,
    /// Long-poll wait in seconds (1 to 30)
    #[arg(long, env = "STACKHOOK_MNS_WAIT", default_value_t = stackhook_smq::DEFAULT_WAIT.as_secs(), value_parser = clap::value_parser!(u64).range(1..=30))]
    mns_wait: u64,
    /// Accept SMQ topic HTTP pushes on this path of the receiver (e.g. /notifications)
    #[arg(long, env = "STACKHOOK_MNS_PUSH_PATH")]
    mns_push_path: Option<String>,
    /// Accept a push's signing certificate only under these URL prefixes
    /// (default: Alibaba's documented bucket only)
    #[arg(
        long = "mns-cert-url",
        env = "STACKHOOK_MNS_CERT_URLS",
        value_delimiter = ',',
        requires = "mns_push_path"
    )]
    mns_cert_urls: Vec<String>,
}

impl SmqArgs {
    /// The SMQ intakes to run beside the receiver, checked: a queue that
    /// does not exist or refuses the credentials fails here, before the
    /// listener is bound, as one error.
    pub(crate) async fn extras(self, shutdown_grace: Duration) -> anyhow::Result<Extras> {
        let mut extras = Extras::new();
        if let Some(arn) = &self.mns_queue {
            let arn: Arn = arn.parse().with_context(|| format!("--mns-queue {arn}"))?;
            let credentials =
                AlibabaCredentials::from_env().context("--mns-queue needs credentials")?;
            let mut smq_credentials =
                Credentials::new(credentials.access_key_id(), credentials.access_key_secret());
            if let Some(token) = credentials.security_token() {
                smq_credentials = smq_credentials.with_security_token(token);
            }
            let mut config = ConsumerConfig::new(arn, smq_credentials)
                .receivers(self.mns_receivers)
                .poison_dequeue_limit(self.mns_poison_limit)
                .wait(Duration::from_secs(self.mns_wait))
                .shutdown_grace(shutdown_grace);
            if let Some(endpoint) = &self.mns_endpoint {
                config = config.endpoint(endpoint.clone());
            }
            let consumer = Consumer::new(config)?;
            consumer.check().await?;
            extras = stackhook_smq::serve_queue(extras, consumer);
        }
        if let Some(path) = self.mns_push_path {
            anyhow::ensure!(
                path.starts_with('/'),
                "--mns-push-path must start with /, not {path:?}"
            );
            let mut policy: Option<CertUrlPolicy> = None;
            for prefix in &self.mns_cert_urls {
                policy = Some(
                    match policy {
                        None => CertUrlPolicy::only(prefix),
                        Some(policy) => policy.and(prefix),
                    }
                    .with_context(|| format!("--mns-cert-url {prefix}"))?,
                );
            }
            let mut verifier = PushVerifier::new()?;
            if let Some(policy) = policy {
                verifier = verifier.with_policy(policy);
            }
            tracing::info!(%path, "accepting SMQ topic pushes");
            extras = stackhook_smq::serve_push(extras, path, verifier);
        }
        Ok(extras)
    }
}
