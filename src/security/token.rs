//! The shared token for `web:` ServiceTokens.
//!
//! ROS sends whatever the ServiceToken URL and `HttpConfig.Headers` say, so a
//! token can ride in either: `web:https://host/?token=T`, or a header
//! `X-Stackhook-Token: T` in `HttpConfig.Headers`. Both are accepted; the
//! comparison runs in constant time over SHA-256 digests, so neither the
//! content nor the length of the token leaks through timing.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::sensitive::Sensitive;

/// The header that carries the token.
pub const TOKEN_HEADER: &str = "x-stackhook-token";

/// The query parameter that carries the token.
pub const TOKEN_PARAM: &str = "token";

/// Tokens shorter than this get a warning at start.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token check failed. The messages never contain a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Neither the header nor the query parameter is present.
    Missing,
    /// A token was sent and it is not the configured one.
    Wrong,
}

impl TokenError {
    /// A short reason for the 401 body.
    pub fn reason(self) -> &'static str {
        match self {
            TokenError::Missing => {
                "missing token: send the X-Stackhook-Token header or the token query parameter"
            }
            TokenError::Wrong => "wrong token",
        }
    }
}

/// Checks requests against one configured token.
#[derive(Clone)]
pub struct TokenCheck {
    digest: [u8; 32],
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenCheck([redacted])")
    }
}

impl TokenCheck {
    /// A check for `token`.
    pub fn new(token: &Sensitive<String>) -> Self {
        TokenCheck {
            digest: Sha256::digest(token.expose().as_bytes()).into(),
        }
    }

    /// Whether `candidate` is the token, in constant time.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate).into();
        bool::from(self.digest.ct_eq(&digest))
    }

    /// Check a request's header, then its query string.
    ///
    /// # Errors
    /// [`TokenError`] when no token was sent or none of those sent matches.
    pub fn check(&self, headers: &HeaderMap, query: Option<&str>) -> Result<(), TokenError> {
        let mut sent = false;
        for value in headers.get_all(TOKEN_HEADER) {
            sent = true;
            if self.matches(value.as_bytes()) {
                return Ok(());
            }
        }
        for candidate in query_values(query.unwrap_or_default(), TOKEN_PARAM) {
            sent = true;
            if self.matches(&candidate) {
                return Ok(());
            }
        }
        Err(if sent {
            TokenError::Wrong
        } else {
            TokenError::Missing
        })
    }
}

/// Every value of the query parameter `name`, percent-decoded.
fn query_values<'a>(query: &'a str, name: &'a str) -> impl Iterator<Item = Vec<u8>> + 'a {
    query.split('&').filter_map(move |pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name.as_bytes()).then(|| percent_decode(value))
    })
}

/// `application/x-www-form-urlencoded` decoding; bad escapes stay as they are.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push(hi << 4 | lo);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    out
}

fn hex_digit(byte: u8) -> Option<u8> {
    (byte as char)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> TokenCheck {
        TokenCheck::new(&Sensitive::new("correct horse battery".to_string()))
    }

    #[test]
    fn accepts_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            TOKEN_HEADER,
            "correct horse battery".parse().expect("header"),
        );
        assert_eq!(check().check(&headers, None), Ok(()));
        assert_eq!(
            check().check(&HeaderMap::new(), Some("a=1&token=correct+horse%20battery")),
            Ok(())
        );
    }

    #[test]
    fn missing_and_wrong_are_told_apart() {
        assert_eq!(
            check().check(&HeaderMap::new(), Some("a=1")),
            Err(TokenError::Missing)
        );
        assert_eq!(
            check().check(&HeaderMap::new(), Some("token=correct")),
            Err(TokenError::Wrong)
        );
        assert!(!TokenError::Wrong.reason().contains("correct"));
    }

    #[test]
    fn percent_decoding_tolerates_bad_escapes() {
        assert_eq!(percent_decode("a%2"), b"a%2");
        assert_eq!(percent_decode("%zz%41"), b"%zzA");
        assert_eq!(percent_decode("%"), b"%");
    }
}
