//! SMQ resource names as a ROS ServiceToken carries them.
//!
//! `acs:mns:<region>:<account>:queues/<name>` or `...:topics/<name>`; the ROS
//! CDK also writes `...:/queues/<name>`. The public endpoint is
//! `https://<account>.mns.<region>.aliyuncs.com`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// Whether an ARN names a queue or a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    /// `queues/<name>`.
    Queue,
    /// `topics/<name>`.
    Topic,
}

impl ResourceKind {
    fn segment(self) -> &'static str {
        match self {
            ResourceKind::Queue => "queues",
            ResourceKind::Topic => "topics",
        }
    }
}

/// A parsed `acs:mns:...` resource name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Arn {
    region: String,
    account: String,
    kind: ResourceKind,
    name: String,
}

impl Arn {
    /// A queue or topic name.
    pub fn new(
        region: impl Into<String>,
        account: impl Into<String>,
        kind: ResourceKind,
        name: impl Into<String>,
    ) -> Result<Self> {
        let arn = Arn {
            region: region.into(),
            account: account.into(),
            kind,
            name: name.into(),
        };
        arn.validate()?;
        Ok(arn)
    }

    /// The region id, e.g. `cn-hangzhou`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The account id.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Queue or topic.
    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    /// The queue or topic name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public endpoint, `https://<account>.mns.<region>.aliyuncs.com`.
    pub fn endpoint(&self) -> String {
        format!("https://{}.mns.{}.aliyuncs.com", self.account, self.region)
    }

    fn validate(&self) -> Result<()> {
        let invalid = |reason: &str| {
            Err(Error::InvalidArgument(format!(
                "SMQ ARN `{self}`: {reason}"
            )))
        };
        if !is_dns_label(&self.region) {
            return invalid("the region must be letters, digits and `-`");
        }
        if !is_dns_label(&self.account) {
            return invalid("the account id must be letters, digits and `-`");
        }
        // SMQ names: letters, digits and `-`, starting with a letter or
        // digit, at most 256 characters.
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 256
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !self.name.starts_with('-');
        if !name_ok {
            return invalid(
                "the name must be 1-256 letters, digits and `-`, not starting with `-`",
            );
        }
        Ok(())
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

impl FromStr for Arn {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidArgument(format!("SMQ ARN `{s}`: {reason}"));
        let rest = s.strip_prefix("acs:mns:").ok_or_else(|| {
            bad("expected `acs:mns:<region>:<account>:queues/<name>` or `...:topics/<name>`")
        })?;
        let mut parts = rest.splitn(3, ':');
        let (Some(region), Some(account), Some(resource)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected `acs:mns:<region>:<account>:queues/<name>`"));
        };
        let resource = resource.strip_prefix('/').unwrap_or(resource);
        let (kind, name) = if let Some(name) = resource.strip_prefix("queues/") {
            (ResourceKind::Queue, name)
        } else if let Some(name) = resource.strip_prefix("topics/") {
            (ResourceKind::Topic, name)
        } else {
            return Err(bad(
                "the resource must be `queues/<name>` or `topics/<name>`",
            ));
        };
        Arn::new(region, account, kind, name)
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "acs:mns:{}:{}:{}/{}",
            self.region,
            self.account,
            self.kind.segment(),
            self.name
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_arn_parses_and_derives_the_endpoint() {
        let arn: Arn = "acs:mns:cn-hangzhou:1234567890123456:queues/ros-requests"
            .parse()
            .expect("arn");
        assert_eq!(arn.region(), "cn-hangzhou");
        assert_eq!(arn.account(), "1234567890123456");
        assert_eq!(arn.kind(), ResourceKind::Queue);
        assert_eq!(arn.name(), "ros-requests");
        assert_eq!(
            arn.endpoint(),
            "https://1234567890123456.mns.cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(
            arn.to_string(),
            "acs:mns:cn-hangzhou:1234567890123456:queues/ros-requests"
        );
    }

    #[test]
    fn topic_arn_and_the_cdk_slash_form_parse() {
        let arn: Arn = "acs:mns:eu-central-1:42:/topics/events"
            .parse()
            .expect("arn");
        assert_eq!(arn.kind(), ResourceKind::Topic);
        assert_eq!(arn.name(), "events");
        assert_eq!(arn.to_string(), "acs:mns:eu-central-1:42:topics/events");
        let queue: Arn = "acs:mns:cn-beijing:42:/queues/q".parse().expect("arn");
        assert_eq!(queue.kind(), ResourceKind::Queue);
    }

    #[test]
    fn malformed_arns_are_rejected() {
        for bad in [
            "",
            "acs:fc:cn-hangzhou:42:functions/f",
            "acs:mns:cn-hangzhou:42",
            "acs:mns:cn-hangzhou:42:queues/",
            "acs:mns:cn-hangzhou:42:subscriptions/x",
            "acs:mns:cn-hangzhou:42:queues/a/b",
            "acs:mns:cn-hangzhou:42:queues/a?b",
            "acs:mns::42:queues/q",
            "acs:mns:cn-hangzhou:4.2:queues/q",
            "acs:mns:cn-hangzhou:42:queues/-q",
        ] {
            let err = bad.parse::<Arn>().expect_err(bad);
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad}: {err}");
        }
    }
}
