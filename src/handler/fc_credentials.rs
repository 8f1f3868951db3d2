//! The credentials Function Compute sends with each event invocation.

use http::HeaderMap;

use crate::security::sensitive::Sensitive;

/// The header with the function role's AccessKey id.
pub const FC_ACCESS_KEY_ID: &str = "x-fc-access-key-id";
/// The header with the function role's AccessKey secret.
pub const FC_ACCESS_KEY_SECRET: &str = "x-fc-access-key-secret";
/// The header with the function role's STS token.
pub const FC_SECURITY_TOKEN: &str = "x-fc-security-token";

/// The temporary credentials of a Function Compute function's role, as the
/// invocation's `x-fc-*` headers carried them.
///
/// The runtime reads them from the request and hands them to the handler in
/// its [`RequestContext`](super::RequestContext); it never journals or logs
/// them (`Debug` shows the key id only). `stackhook-cloud` turns them into
/// signing credentials (`AlibabaCredentials::from(&FcCredentials)`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FcCredentials {
    access_key_id: String,
    access_key_secret: Sensitive<String>,
    security_token: Option<Sensitive<String>>,
}

impl FcCredentials {
    /// Credentials from their parts; an empty token counts as none.
    pub fn new(
        access_key_id: impl Into<String>,
        access_key_secret: impl Into<String>,
        security_token: Option<String>,
    ) -> Self {
        FcCredentials {
            access_key_id: access_key_id.into(),
            access_key_secret: Sensitive::new(access_key_secret.into()),
            security_token: security_token.filter(|t| !t.is_empty()).map(Sensitive::new),
        }
    }

    /// From an invocation's headers: `None` unless both
    /// `x-fc-access-key-id` and `x-fc-access-key-secret` are present and
    /// not empty (`x-fc-security-token` is optional).
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        };
        Some(FcCredentials::new(
            get(FC_ACCESS_KEY_ID)?,
            get(FC_ACCESS_KEY_SECRET)?,
            get(FC_SECURITY_TOKEN).map(String::from),
        ))
    }

    /// The AccessKey id.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }
    /// The AccessKey secret.
    pub fn access_key_secret(&self) -> &str {
        self.access_key_secret.expose()
    }
    /// The STS token, when the headers carried one.
    pub fn security_token(&self) -> Option<&str> {
        self.security_token.as_ref().map(|t| t.expose().as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, http::HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn read_from_the_invocation_headers() {
        let credentials = FcCredentials::from_headers(&headers(&[
            (FC_ACCESS_KEY_ID, "STS.id"),
            (FC_ACCESS_KEY_SECRET, "secret"),
            (FC_SECURITY_TOKEN, "token"),
        ]))
        .expect("complete headers");
        assert_eq!(credentials.access_key_id(), "STS.id");
        assert_eq!(credentials.access_key_secret(), "secret");
        assert_eq!(credentials.security_token(), Some("token"));
    }

    #[test]
    fn missing_or_empty_key_means_none() {
        assert_eq!(
            FcCredentials::from_headers(&headers(&[(FC_ACCESS_KEY_ID, "id")])),
            None
        );
        assert_eq!(
            FcCredentials::from_headers(&headers(&[
                (FC_ACCESS_KEY_ID, ""),
                (FC_ACCESS_KEY_SECRET, "secret"),
            ])),
            None
        );
        let no_token = FcCredentials::from_headers(&headers(&[
            (FC_ACCESS_KEY_ID, "id"),
            (FC_ACCESS_KEY_SECRET, "secret"),
            (FC_SECURITY_TOKEN, ""),
        ]))
        .expect("token is optional");
        assert_eq!(no_token.security_token(), None);
    }

    #[test]
    fn debug_never_shows_the_secret_or_token() {
        let credentials = FcCredentials::new("id", "s3cr3t", Some("t0k3n".into()));
        let printed = format!("{credentials:?}");
        assert!(printed.contains("id"), "{printed}");
        assert!(
            !printed.contains("s3cr3t") && !printed.contains("t0k3n"),
            "{printed}"
        );
    }
}
