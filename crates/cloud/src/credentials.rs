//! Access keys for Alibaba Cloud and Huawei Cloud, with redacted `Debug`.
//!
//! Alibaba: the standard environment variables
//! (`ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`, optional
//! `ALIBABA_CLOUD_SECURITY_TOKEN`), or Function Compute's per-invocation
//! headers (`x-fc-access-key-id`, `x-fc-access-key-secret`,
//! `x-fc-security-token`), which are fresh on every call and preferred there.
//!
//! Huawei: `HUAWEICLOUD_SDK_AK`, `HUAWEICLOUD_SDK_SK`, optional
//! `HUAWEICLOUD_SDK_SECURITY_TOKEN` and `HUAWEICLOUD_SDK_PROJECT_ID`.
//!
//! Nothing here is ever logged: the `Debug` impls print the key id only.

use std::fmt;
use std::sync::Arc;

use stackhook::handler::{FcCredentials, RequestContext};

use crate::error::{Error, Result};

/// Alibaba Cloud access key id variable.
pub const ALIBABA_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// Alibaba Cloud access key secret variable.
pub const ALIBABA_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// Alibaba Cloud STS token variable (optional).
pub const ALIBABA_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";
/// Huawei Cloud access key variable.
pub const HUAWEI_AK: &str = "HUAWEICLOUD_SDK_AK";
/// Huawei Cloud secret key variable.
pub const HUAWEI_SK: &str = "HUAWEICLOUD_SDK_SK";
/// Huawei Cloud temporary-credential token variable (optional).
pub const HUAWEI_SECURITY_TOKEN: &str = "HUAWEICLOUD_SDK_SECURITY_TOKEN";
/// Huawei Cloud project id variable.
pub const HUAWEI_PROJECT_ID: &str = "HUAWEICLOUD_SDK_PROJECT_ID";

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for signing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Alibaba Cloud credentials: an AccessKey pair, plus an STS token for
/// temporary credentials.
#[derive(Clone, Debug)]
pub struct AlibabaCredentials {
    access_key_id: String,
    access_key_secret: Secret,
    security_token: Option<Secret>,
}

impl AlibabaCredentials {
    /// Long-term AccessKey credentials.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        AlibabaCredentials {
            access_key_id: access_key_id.into(),
            access_key_secret: Secret::new(access_key_secret),
            security_token: None,
        }
    }

    /// Add an STS security token (temporary credentials).
    #[must_use]
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(Secret::new(token));
        self
    }

    /// From the `ALIBABA_CLOUD_*` environment variables.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the variable that is missing or empty.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`
    /// (for tests and for other sources of variables).
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the variable that is missing or empty.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let id = required(&lookup, ALIBABA_ACCESS_KEY_ID)?;
        let secret = required(&lookup, ALIBABA_ACCESS_KEY_SECRET)?;
        let mut credentials = AlibabaCredentials::new(id, secret);
        if let Some(token) = lookup(ALIBABA_SECURITY_TOKEN).filter(|t| !t.is_empty()) {
            credentials = credentials.with_security_token(token);
        }
        Ok(credentials)
    }

    /// From the values of Function Compute's per-invocation headers
    /// `x-fc-access-key-id`, `x-fc-access-key-secret` and `x-fc-security-token`.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the header that is missing or empty.
    pub fn from_fc_headers(
        access_key_id: Option<&str>,
        access_key_secret: Option<&str>,
        security_token: Option<&str>,
    ) -> Result<Self> {
        let id = non_empty(access_key_id, "header x-fc-access-key-id")?;
        let secret = non_empty(access_key_secret, "header x-fc-access-key-secret")?;
        let mut credentials = AlibabaCredentials::new(id, secret);
        if let Some(token) = security_token.filter(|t| !t.is_empty()) {
            credentials = credentials.with_security_token(token);
        }
        Ok(credentials)
    }

    /// From an HTTP header map holding Function Compute's `x-fc-*` headers.
    ///
    /// # Errors
    /// As [`from_fc_headers`](Self::from_fc_headers).
    pub fn from_fc_header_map(headers: &http::HeaderMap) -> Result<Self> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        Self::from_fc_headers(
            get("x-fc-access-key-id"),
            get("x-fc-access-key-secret"),
            get("x-fc-security-token"),
        )
    }

    /// The AccessKey id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
    /// The AccessKey secret.
    pub fn access_key_secret(&self) -> &str {
        self.access_key_secret.expose()
    }
    /// The STS token, for temporary credentials.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_ref().map(Secret::expose)
    }
}

/// The function role's credentials that Function Compute sent with an
/// invocation, as a handler's context carries them.
impl From<&FcCredentials> for AlibabaCredentials {
    fn from(fc: &FcCredentials) -> Self {
        let credentials = AlibabaCredentials::new(fc.access_key_id(), fc.access_key_secret());
        match fc.security_token() {
            Some(token) => credentials.with_security_token(token),
            None => credentials,
        }
    }
}

/// Huawei Cloud credentials: AK/SK, plus a security token for temporary
/// credentials, and the project id most RFS paths need.
#[derive(Clone, Debug)]
pub struct HuaweiCredentials {
    ak: String,
    sk: Secret,
    security_token: Option<Secret>,
    project_id: Option<String>,
}

impl HuaweiCredentials {
    /// Permanent AK/SK credentials.
    pub fn new(ak: impl Into<String>, sk: impl Into<String>) -> Self {
        HuaweiCredentials {
            ak: ak.into(),
            sk: Secret::new(sk),
            security_token: None,
            project_id: None,
        }
    }

    /// Add a security token (temporary AK/SK).
    #[must_use]
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(Secret::new(token));
        self
    }

    /// Set the default project id.
    #[must_use]
    pub fn with_project_id(mut self, project_id: impl Into<String>) -> Self {
        self.project_id = Some(project_id.into());
        self
    }

    /// From the `HUAWEICLOUD_SDK_*` environment variables.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the variable that is missing or empty.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup`.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the variable that is missing or empty.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let ak = required(&lookup, HUAWEI_AK)?;
        let sk = required(&lookup, HUAWEI_SK)?;
        let mut credentials = HuaweiCredentials::new(ak, sk);
        if let Some(token) = lookup(HUAWEI_SECURITY_TOKEN).filter(|t| !t.is_empty()) {
            credentials = credentials.with_security_token(token);
        }
        if let Some(project) = lookup(HUAWEI_PROJECT_ID).filter(|t| !t.is_empty()) {
            credentials = credentials.with_project_id(project);
        }
        Ok(credentials)
    }

    /// The access key.
    pub fn ak(&self) -> &str {
        &self.ak
    }
    /// The secret key.
    pub fn sk(&self) -> &str {
        self.sk.expose()
    }
    /// The security token, for temporary credentials.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_ref().map(Secret::expose)
    }
    /// The default project id.
    pub fn project_id(&self) -> Option<&str> {
        self.project_id.as_deref()
    }
}

/// Where credentials are read from, resolved anew on every call: the process
/// environment by default, or a function (tests, other secret stores).
#[derive(Clone)]
pub struct EnvLookup(Arc<LookupFn>);

type LookupFn = dyn Fn(&str) -> Option<String> + Send + Sync;

impl EnvLookup {
    /// The process environment.
    pub fn process() -> Self {
        EnvLookup(Arc::new(|name| std::env::var(name).ok()))
    }

    /// A fixed set of variables (nothing else is visible).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let map: std::collections::HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        EnvLookup(Arc::new(move |name| map.get(name).cloned()))
    }

    /// Variables from a function.
    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        EnvLookup(Arc::new(lookup))
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
    }

    /// Alibaba credentials from these variables.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the missing variable.
    pub fn alibaba(&self) -> Result<AlibabaCredentials> {
        AlibabaCredentials::from_lookup(|name| self.get(name))
    }

    /// Alibaba credentials for a handler: these variables when they are set,
    /// otherwise the Function Compute per-invocation credentials in
    /// `context` (the function role's temporary keys).
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the missing variable, when neither source has them.
    pub fn alibaba_for(&self, context: &RequestContext) -> Result<AlibabaCredentials> {
        match (self.alibaba(), context.fc_credentials()) {
            (Ok(credentials), _) => Ok(credentials),
            (Err(_), Some(fc)) => Ok(AlibabaCredentials::from(fc)),
            (Err(missing), None) => Err(missing),
        }
    }

    /// Huawei credentials from these variables.
    ///
    /// # Errors
    /// [`Error::Credentials`] naming the missing variable.
    pub fn huawei(&self) -> Result<HuaweiCredentials> {
        HuaweiCredentials::from_lookup(|name| self.get(name))
    }
}

impl Default for EnvLookup {
    fn default() -> Self {
        EnvLookup::process()
    }
}

impl fmt::Debug for EnvLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EnvLookup")
    }
}

fn required(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Result<String> {
    match lookup(name) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(Error::Credentials(format!(
            "environment variable {name} is not set"
        ))),
    }
}

fn non_empty(value: Option<&str>, what: &str) -> Result<String> {
    match value {
        Some(value) if !value.is_empty() => Ok(value.to_string()),
        _ => Err(Error::Credentials(format!("{what} is missing"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            list.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn reads_alibaba_variables() {
        let c = AlibabaCredentials::from_lookup(vars(&[
            (ALIBABA_ACCESS_KEY_ID, "id"),
            (ALIBABA_ACCESS_KEY_SECRET, "secret"),
            (ALIBABA_SECURITY_TOKEN, "token"),
        ]))
        .expect("complete");
        assert_eq!(
            (c.access_key_id(), c.access_key_secret(), c.security_token()),
            ("id", "secret", Some("token"))
        );
    }

    #[test]
    fn missing_variable_is_named() {
        let e = AlibabaCredentials::from_lookup(vars(&[(ALIBABA_ACCESS_KEY_ID, "id")]))
            .expect_err("incomplete");
        assert!(e.to_string().contains(ALIBABA_ACCESS_KEY_SECRET), "{e}");
        let e = HuaweiCredentials::from_lookup(vars(&[(HUAWEI_SK, "")])).expect_err("empty");
        assert!(e.to_string().contains(HUAWEI_AK), "{e}");
    }

    #[test]
    fn reads_fc_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("x-fc-access-key-id", "STS.id".parse().expect("valid"));
        headers.insert("x-fc-access-key-secret", "s".parse().expect("valid"));
        headers.insert("x-fc-security-token", "t".parse().expect("valid"));
        let c = AlibabaCredentials::from_fc_header_map(&headers).expect("complete");
        assert_eq!(c.security_token(), Some("t"));
        let e = AlibabaCredentials::from_fc_headers(Some("id"), None, None).expect_err("no secret");
        assert!(e.to_string().contains("x-fc-access-key-secret"));
    }

    #[test]
    fn debug_redacts_secrets() {
        let a = AlibabaCredentials::new("id", "topsecret").with_security_token("tokentoken");
        let h = HuaweiCredentials::new("ak", "topsecret").with_security_token("tokentoken");
        for text in [format!("{a:?}"), format!("{h:?}")] {
            assert!(
                !text.contains("topsecret") && !text.contains("tokentoken"),
                "{text}"
            );
        }
    }
}
