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
    /// its role); else the ECS RAM role named by ALIBABA_CLOUD_ECS_METADATA
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
            let role = std::env::var(ECS_ROLE_VAR).ok().filter(|r| !r.is_empty());
            let (smq_credentials, ecs_role) = match (AlibabaCredentials::from_env(), role) {
                (Ok(credentials), _) => {
                    let mut smq = Credentials::new(
                        credentials.access_key_id(),
                        credentials.access_key_secret(),
                    );
                    if let Some(token) = credentials.security_token() {
                        smq = smq.with_security_token(token);
                    }
                    (smq, None)
                }
                (Err(_), Some(role)) => {
                    let role = EcsRole::new(role)?;
                    (role.fetch().await?, Some(role))
                }
                (Err(error), None) => {
                    return Err(anyhow::Error::new(error).context(format!(
                        "--mns-queue needs credentials (or an ECS RAM role named by {ECS_ROLE_VAR})"
                    )));
                }
            };
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
            if let Some(role) = ecs_role {
                role.keep_fresh(consumer.client().clone());
            }
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

/// The ECS RAM role to take credentials from, as the Alibaba Cloud SDKs'
/// credentials chain names it.
const ECS_ROLE_VAR: &str = "ALIBABA_CLOUD_ECS_METADATA";
/// The instance metadata service; overridden for tests only.
const ECS_METADATA: &str = "http://100.100.100.200";
const ECS_METADATA_VAR: &str = "STACKHOOK_ECS_METADATA_ENDPOINT";
/// STS credentials from the metadata service last hours and are rotated
/// well before they expire; reading them this often keeps them current.
const ECS_REFRESH: Duration = Duration::from_secs(10 * 60);

/// Credentials of an ECS instance's RAM role, from the metadata service
/// (with its session token when the instance enforces one).
struct EcsRole {
    role: String,
    base: String,
    http: reqwest::Client,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EcsCredentials {
    access_key_id: String,
    access_key_secret: String,
    security_token: String,
}

impl EcsRole {
    fn new(role: String) -> anyhow::Result<Self> {
        let base = std::env::var(ECS_METADATA_VAR).unwrap_or_else(|_| ECS_METADATA.to_owned());
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .context("building the metadata client")?;
        Ok(EcsRole { role, base, http })
    }

    async fn fetch(&self) -> anyhow::Result<Credentials> {
        let base = self.base.trim_end_matches('/');
        // The hardened metadata mode wants a session token; the normal mode
        // answers without one.
        let token = match self
            .http
            .put(format!("{base}/latest/api/token"))
            .header("X-aliyun-ecs-metadata-token-ttl-seconds", "60")
            .send()
            .await
        {
            Ok(reply) if reply.status().is_success() => reply.text().await.ok(),
            _ => None,
        };
        let mut request = self.http.get(format!(
            "{base}/latest/meta-data/ram/security-credentials/{}",
            self.role
        ));
        if let Some(token) = &token {
            request = request.header("X-aliyun-ecs-metadata-token", token);
        }
        let reply = request
            .send()
            .await
            .with_context(|| format!("reading ECS RAM role {} credentials", self.role))?;
        anyhow::ensure!(
            reply.status().is_success(),
            "the ECS metadata service answered HTTP {} for RAM role {} ({ECS_ROLE_VAR})",
            reply.status().as_u16(),
            self.role
        );
        let credentials: EcsCredentials = reply
            .json()
            .await
            .with_context(|| format!("reading ECS RAM role {} credentials", self.role))?;
        Ok(
            Credentials::new(credentials.access_key_id, credentials.access_key_secret)
                .with_security_token(credentials.security_token),
        )
    }

    /// Re-read the role's credentials every [`ECS_REFRESH`] into `client`.
    fn keep_fresh(self, client: stackhook_smq::Client) {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(ECS_REFRESH).await;
                match self.fetch().await {
                    Ok(credentials) => client.set_credentials(credentials),
                    Err(error) => {
                        let error = format!("{error:#}");
                        tracing::warn!(%error, "could not refresh the ECS RAM role's credentials; keeping the current ones");
                    }
                }
            }
        });
    }
}
