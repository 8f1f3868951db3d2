//! `Custom::RandomString`: a random string, for passwords, suffixes and tokens.
//!
//! Properties (numbers and booleans may be strings, as ROS sends them):
//!
//! | property | default | meaning |
//! |---|---|---|
//! | `Length` | 16 | characters, 1 to 1024 |
//! | `Upper` | true | include `A-Z` |
//! | `Lower` | true | include `a-z` |
//! | `Digits` | true | include `0-9` |
//! | `Symbols` | false | include `!#$%&*+-.:=?@^_~` |
//!
//! The value is in Data under `Value`. Every chosen class appears at least
//! once when `Length` allows it.
//!
//! ```yaml
//! DbPassword:
//!   Type: Custom::RandomString
//!   Properties:
//!     ServiceToken: web:https://provider.example.com/
//!     Parameters:
//!       Length: "24"
//!       Symbols: "true"
//! ```
//!
//! # How the value stays stable
//! ROS sends Update only when some property changed, and ROS keeps the
//! physical id. The value is derived, not stored: HMAC-SHA256 keyed with the
//! provider's secret key over the physical id and the generating properties
//! (`Length` and the classes), expanded in counter mode and mapped onto the
//! alphabet by rejection sampling (no modulo bias). So an Update that changes
//! only other properties returns the same value, an Update that changes how
//! it is generated returns a new one, and a rollback to the old properties
//! returns the old value again. No state store is needed, and restarts or
//! several replicas agree as long as they share the key.
//!
//! The trade-off: the value is exactly as secret as the key. Anyone who holds
//! the key and can read the stack (physical id and properties) can recompute
//! it; rotating the key changes every value at its next Update. Keep the key
//! in a secret store (`STACKHOOK_SECRET_KEY`), not in the template. The value
//! also appears in the stack's outputs, as any Data does.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

use stackhook::handler::{
    CreateRequest, Created, DeleteRequest, Deleted, Handler, UpdateRequest, Updated,
};
use stackhook::physical_id;

/// The longest value, so the answer stays well within ROS's 4096-byte body.
pub const MAX_LENGTH: u32 = 1024;

const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const LOWER: &str = "abcdefghijklmnopqrstuvwxyz";
const DIGITS: &str = "0123456789";
const SYMBOLS: &str = "!#$%&*+-.:=?@^_~";

/// Derivation label; a new scheme gets a new label, so old values never collide.
const LABEL: &[u8] = b"stackhook/random-string/v1";

/// Generates stable random strings from a secret key.
#[derive(Clone)]
pub struct RandomString {
    key: Vec<u8>,
}

impl std::fmt::Debug for RandomString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RandomString { key: <redacted> }")
    }
}

/// The properties of a `Custom::RandomString`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RandomStringProperties {
    /// Number of characters.
    #[serde(with = "stackhook::lenient")]
    pub length: u32,
    /// Include `A-Z`.
    #[serde(with = "stackhook::lenient")]
    pub upper: bool,
    /// Include `a-z`.
    #[serde(with = "stackhook::lenient")]
    pub lower: bool,
    /// Include `0-9`.
    #[serde(with = "stackhook::lenient")]
    pub digits: bool,
    /// Include `!#$%&*+-.:=?@^_~`.
    #[serde(with = "stackhook::lenient")]
    pub symbols: bool,
}

impl Default for RandomStringProperties {
    fn default() -> Self {
        RandomStringProperties {
            length: 16,
            upper: true,
            lower: true,
            digits: true,
            symbols: false,
        }
    }
}

/// Why a value cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum RandomStringError {
    /// `Length` is out of range.
    #[error("Length must be between 1 and {MAX_LENGTH}, not {0}")]
    Length(u32),
    /// Every character class is switched off.
    #[error("at least one of Upper, Lower, Digits and Symbols must be true")]
    NoClasses,
}

impl RandomStringProperties {
    fn classes(&self) -> Vec<&'static str> {
        [
            (self.upper, UPPER),
            (self.lower, LOWER),
            (self.digits, DIGITS),
            (self.symbols, SYMBOLS),
        ]
        .into_iter()
        .filter_map(|(on, class)| on.then_some(class))
        .collect()
    }

    /// The canonical text of what generates the value.
    fn canonical(&self) -> String {
        format!(
            "length={};upper={};lower={};digits={};symbols={}",
            self.length, self.upper, self.lower, self.digits, self.symbols
        )
    }
}

impl RandomString {
    /// The resource type `stackhook serve` routes to this handler.
    pub const RESOURCE_TYPE: &'static str = "Custom::RandomString";

    /// A generator keyed with `key` (at least 32 random bytes recommended).
    pub fn new(key: &[u8]) -> Self {
        RandomString { key: key.to_vec() }
    }

    /// The value for the resource `physical_id` with `properties`.
    ///
    /// # Errors
    /// When the properties ask for something impossible.
    pub fn value(
        &self,
        physical_id: &str,
        properties: &RandomStringProperties,
    ) -> Result<String, RandomStringError> {
        if properties.length == 0 || properties.length > MAX_LENGTH {
            return Err(RandomStringError::Length(properties.length));
        }
        let classes = properties.classes();
        if classes.is_empty() {
            return Err(RandomStringError::NoClasses);
        }
        let alphabet: Vec<char> = classes.iter().flat_map(|c| c.chars()).collect();
        let length = properties.length as usize;
        let mut bytes = KeyStream::new(&self.key, physical_id, &properties.canonical());
        // Retry (deterministically, further along the stream) until every
        // class appears; with 16 characters a retry is rarely needed.
        let mut last = String::new();
        for _ in 0..64 {
            last = (0..length)
                .map(|_| alphabet[bytes.below(alphabet.len())])
                .collect();
            let complete = length < classes.len()
                || classes
                    .iter()
                    .all(|class| last.chars().any(|c| class.contains(c)));
            if complete {
                break;
            }
        }
        Ok(last)
    }
}

/// HMAC-SHA256 in counter mode: an endless, reproducible byte stream.
struct KeyStream {
    mac: Hmac<Sha256>,
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl KeyStream {
    fn new(key: &[u8], physical_id: &str, canonical: &str) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        for part in [LABEL, physical_id.as_bytes(), canonical.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        KeyStream {
            mac,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    fn byte(&mut self) -> u8 {
        if self.used == self.block.len() {
            let mut mac = self.mac.clone();
            mac.update(&self.counter.to_be_bytes());
            self.block = mac.finalize().into_bytes().into();
            self.counter += 1;
            self.used = 0;
        }
        self.used += 1;
        self.block[self.used - 1]
    }

    /// A uniform index below `n` (n ≤ 256), by rejection sampling.
    fn below(&mut self, n: usize) -> usize {
        let limit = 256 - (256 % n);
        loop {
            let b = self.byte() as usize;
            if b < limit {
                return b % n;
            }
        }
    }
}

impl Handler for RandomString {
    type Properties = RandomStringProperties;
    type Error = RandomStringError;
    // Deriving the value again gives the same value, and a rerun Create derives the same id
    // from the same request.
    const IDEMPOTENT: bool = true;

    async fn create(
        &self,
        request: CreateRequest<Self::Properties>,
    ) -> Result<Created, Self::Error> {
        let context = &request.context;
        let id = physical_id::generate(
            context.stack_id(),
            context.logical_resource_id(),
            context.request_id(),
        );
        let value = self.value(&id, &request.properties)?;
        Ok(Created::with_id(id).with_data("Value", value))
    }

    async fn update(
        &self,
        request: UpdateRequest<Self::Properties>,
    ) -> Result<Updated, Self::Error> {
        let value = self.value(&request.physical_resource_id, &request.properties)?;
        Ok(Updated::new().with_data("Value", value))
    }

    async fn delete(
        &self,
        _request: DeleteRequest<Self::Properties>,
    ) -> Result<Deleted, Self::Error> {
        // Nothing exists outside ROS: the value lives only in the stack's outputs.
        Ok(Deleted::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(length: u32) -> RandomStringProperties {
        RandomStringProperties {
            length,
            ..RandomStringProperties::default()
        }
    }

    #[test]
    fn same_inputs_same_value() {
        let g = RandomString::new(b"key");
        assert_eq!(
            g.value("id", &props(20)).ok(),
            g.value("id", &props(20)).ok()
        );
    }

    #[test]
    fn changes_with_properties_id_and_key() {
        let g = RandomString::new(b"key");
        let base = g.value("id", &props(20)).expect("value");
        assert_ne!(base, g.value("id2", &props(20)).expect("value"));
        let symbols = RandomStringProperties {
            symbols: true,
            ..props(20)
        };
        assert_ne!(base, g.value("id", &symbols).expect("value"));
        assert_ne!(
            base,
            RandomString::new(b"other")
                .value("id", &props(20))
                .expect("value")
        );
    }

    #[test]
    fn respects_length_and_classes() {
        let g = RandomString::new(b"key");
        let only_digits = RandomStringProperties {
            length: 50,
            upper: false,
            lower: false,
            digits: true,
            symbols: false,
        };
        let v = g.value("id", &only_digits).expect("value");
        assert_eq!(v.len(), 50);
        assert!(v.chars().all(|c| c.is_ascii_digit()));
        let all = RandomStringProperties {
            symbols: true,
            ..props(8)
        };
        for id in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            let v = g.value(id, &all).expect("value");
            assert!(v.chars().any(|c| SYMBOLS.contains(c)), "{v}");
            assert!(v.chars().any(|c| c.is_ascii_uppercase()), "{v}");
        }
    }

    #[test]
    fn refuses_impossible_requests() {
        let g = RandomString::new(b"key");
        assert!(matches!(
            g.value("id", &props(0)),
            Err(RandomStringError::Length(0))
        ));
        assert!(g.value("id", &props(MAX_LENGTH + 1)).is_err());
        let none = RandomStringProperties {
            upper: false,
            lower: false,
            digits: false,
            symbols: false,
            ..props(8)
        };
        assert!(matches!(
            g.value("id", &none),
            Err(RandomStringError::NoClasses)
        ));
    }

    #[test]
    fn properties_accept_strings() {
        let p: RandomStringProperties =
            serde_json::from_str(r#"{"Length": "24", "Symbols": "true"}"#).expect("valid");
        assert_eq!(p.length, 24);
        assert!(p.symbols && p.upper);
    }

    #[test]
    fn debug_hides_the_key() {
        assert!(!format!("{:?}", RandomString::new(b"topsecret")).contains("topsecret"));
    }
}
