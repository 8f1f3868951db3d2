//! [`Sensitive`]: a value that never prints.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What `Debug` and `Display` print instead of a sensitive value.
pub const PLACEHOLDER: &str = "[redacted]";

/// A value that must not reach a log: a password property, a token in `Data`.
///
/// It serializes and deserializes as the bare value (`{"Password": "hunter2"}`
/// fills a `Sensitive<String>` field), so it can sit in a handler's
/// `Properties` struct or be passed to `with_data`. `Debug` and `Display`
/// print [`PLACEHOLDER`], and a value of the wrong type is reported without
/// the value itself (serde would otherwise quote it in the error).
///
/// ```
/// use stackhook::Sensitive;
/// let password = Sensitive::new(String::from("hunter2"));
/// assert_eq!(format!("{password:?} {password}"), "[redacted] [redacted]");
/// assert_eq!(password.expose(), "hunter2");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Sensitive<T>(T);

impl<T> Sensitive<T> {
    /// Wrap a value.
    pub const fn new(value: T) -> Self {
        Sensitive(value)
    }

    /// The value itself. Never log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwrap the value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Sensitive<T> {
    fn from(value: T) -> Self {
        Sensitive(value)
    }
}

impl<T> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PLACEHOLDER)
    }
}

impl<T> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PLACEHOLDER)
    }
}

impl<T: Serialize> Serialize for Sensitive<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Sensitive<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        // Buffer first so the inner type's error, which may quote the value,
        // can be replaced by one that does not.
        let value = serde_json::Value::deserialize(deserializer)?;
        T::deserialize(value)
            .map(Sensitive)
            .map_err(|_| D::Error::custom("invalid sensitive value (value hidden)"))
    }
}

/// `with_data("Password", Sensitive::new(pw))` sends the bare value to ROS.
impl<T: Into<serde_json::Value>> From<Sensitive<T>> for serde_json::Value {
    fn from(value: Sensitive<T>) -> Self {
        value.0.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Serialize)]
    struct Props {
        #[serde(rename = "Password")]
        password: Sensitive<String>,
    }

    #[test]
    fn prints_a_placeholder_and_serializes_the_value() {
        let props: Props =
            serde_json::from_str(r#"{"Password":"hunter2"}"#).expect("valid properties");
        assert_eq!(props.password.expose(), "hunter2");
        assert!(!format!("{props:?}").contains("hunter2"));
        assert_eq!(
            serde_json::to_string(&props).expect("serializes"),
            r#"{"Password":"hunter2"}"#
        );
        let value: serde_json::Value = Sensitive::new("hunter2").into();
        assert_eq!(value, "hunter2");
    }

    #[test]
    fn type_errors_do_not_quote_the_value() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Pin {
            pin: Sensitive<u32>,
        }
        let err = serde_json::from_str::<Pin>(r#"{"pin":"s3cret-pin"}"#).unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }
}
