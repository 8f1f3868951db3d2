//! Accept numbers and booleans that ROS sends as strings.
//!
//! ROS templates often carry `"42"` and `"true"` where a number or a boolean
//! is meant (parameters are strings). Put `#[serde(with = "stackhook::lenient")]`
//! on a field and it accepts both the native JSON value and a string holding
//! it. Booleans also accept `"True"` and `"FALSE"`. For an `Option<T>` field,
//! use `#[serde(default, with = "stackhook::lenient::option")]`.
//!
//! ```
//! use serde::Deserialize;
//!
//! #[derive(Deserialize)]
//! struct Props {
//!     #[serde(with = "stackhook::lenient")]
//!     length: u32,
//!     #[serde(with = "stackhook::lenient")]
//!     upper: bool,
//!     #[serde(default, with = "stackhook::lenient::option")]
//!     ttl: Option<f64>,
//! }
//!
//! let p: Props = serde_json::from_str(r#"{"length": "16", "upper": "True", "ttl": 1.5}"#).unwrap();
//! assert_eq!((p.length, p.upper, p.ttl), (16, true, Some(1.5)));
//! let p: Props = serde_json::from_str(r#"{"length": 8, "upper": false}"#).unwrap();
//! assert_eq!((p.length, p.upper, p.ttl), (8, false, None));
//! ```

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Deserialize `T` from its JSON form or from a string that holds it.
///
/// # Errors
/// The error for the value as given, when neither form decodes.
pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    from_value(value).map_err(D::Error::custom)
}

/// Serialize `T` as usual (the native JSON form).
///
/// # Errors
/// Whatever `T`'s serializer returns.
pub fn serialize<S, T>(value: &T, serializer: S) -> Result<S::Ok, S::Error>
where
    S: Serializer,
    T: Serialize,
{
    value.serialize(serializer)
}

fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
    let direct = T::deserialize(&value);
    let Value::String(text) = &value else {
        return direct;
    };
    if direct.is_ok() {
        return direct;
    }
    let trimmed = text.trim();
    let normalised = if trimmed.eq_ignore_ascii_case("true") {
        "true"
    } else if trimmed.eq_ignore_ascii_case("false") {
        "false"
    } else {
        trimmed
    };
    match serde_json::from_str::<T>(normalised) {
        Ok(parsed) => Ok(parsed),
        Err(_) => direct.map_err(|e| {
            serde_json::Error::custom(format!(
                "{e} (the string {text:?} does not hold one either)"
            ))
        }),
    }
}

/// The same leniency for `Option<T>`: absent or `null` is `None`, and an
/// empty string is `None` too (what a blank template parameter produces).
pub mod option {
    use super::*;

    /// Deserialize `Option<T>` leniently.
    ///
    /// # Errors
    /// As [`super::deserialize`].
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        D: Deserializer<'de>,
        T: DeserializeOwned,
    {
        match Value::deserialize(deserializer)? {
            Value::Null => Ok(None),
            Value::String(s) if s.trim().is_empty() => Ok(None),
            value => super::from_value(value).map(Some).map_err(D::Error::custom),
        }
    }

    /// Serialize `Option<T>` as usual.
    ///
    /// # Errors
    /// Whatever `T`'s serializer returns.
    pub fn serialize<S, T>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: Serialize,
    {
        value.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    struct P {
        #[serde(with = "crate::lenient")]
        n: i64,
        #[serde(with = "crate::lenient")]
        b: bool,
        #[serde(with = "crate::lenient")]
        s: String,
        #[serde(default, with = "crate::lenient::option")]
        o: Option<u8>,
    }

    fn parse(text: &str) -> Result<P, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn accepts_strings_and_natives() {
        let a = parse(r#"{"n":"-42","b":" TRUE ","s":"7","o":"3"}"#).expect("strings");
        assert_eq!(
            a,
            P {
                n: -42,
                b: true,
                s: "7".into(),
                o: Some(3)
            }
        );
        let b = parse(r#"{"n":-42,"b":true,"s":"7","o":3}"#).expect("natives");
        assert_eq!(a, b);
    }

    #[test]
    fn empty_optional_is_none() {
        let p = parse(r#"{"n":1,"b":"false","s":"","o":""}"#).expect("valid");
        assert_eq!(p.o, None);
    }

    #[test]
    fn bad_string_says_what_it_held() {
        let err = parse(r#"{"n":"forty","b":true,"s":""}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("forty"), "{err}");
    }

    #[test]
    fn out_of_range_is_an_error() {
        assert!(parse(r#"{"n":1,"b":true,"s":"","o":"300"}"#).is_err());
    }

    #[test]
    fn serializes_natively() {
        let p = P {
            n: 1,
            b: false,
            s: "x".into(),
            o: None,
        };
        assert_eq!(
            serde_json::to_string(&p).expect("serialize"),
            r#"{"n":1,"b":false,"s":"x","o":null}"#
        );
    }
}
