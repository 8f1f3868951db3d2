//! Parameter checks run before anything is sent; each error names the field.

use crate::error::{Error, Result};

/// `value` must not be empty (nor only whitespace).
pub(crate) fn required(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::validation(
            field,
            "is required and must not be empty",
        ));
    }
    Ok(())
}

/// `value` must be `min..=max` characters long.
pub(crate) fn length(field: &str, value: &str, min: usize, max: usize) -> Result<()> {
    let n = value.chars().count();
    if n < min || n > max {
        let range = if min == max {
            format!("exactly {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(Error::validation(
            field,
            format!("must be {range} characters long, not {n}"),
        ));
    }
    Ok(())
}

/// Every character of `value` must satisfy `allowed`, described by `what`.
pub(crate) fn chars(
    field: &str,
    value: &str,
    allowed: impl Fn(char) -> bool,
    what: &str,
) -> Result<()> {
    match value.chars().find(|c| !allowed(*c)) {
        Some(bad) => Err(Error::validation(
            field,
            format!("may contain only {what}, not {bad:?}"),
        )),
        None => Ok(()),
    }
}

/// A UUID in its 36-character textual form (`8-4-4-4-12` hex digits).
pub(crate) fn uuid(field: &str, value: &str) -> Result<()> {
    let groups: Vec<&str> = value.split('-').collect();
    let shape = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(shape)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(Error::validation(
            field,
            format!("must be a 36-character UUID, not {value:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field() {
        let e = length("UniqueId", &"x".repeat(65), 1, 64).expect_err("too long");
        assert_eq!(
            e.to_string(),
            "invalid UniqueId: must be 1 to 64 characters long, not 65"
        );
        let e = chars(
            "ClientToken",
            "a b",
            |c| c.is_ascii_alphanumeric(),
            "letters",
        )
        .expect_err("space");
        assert!(e.to_string().contains("ClientToken"));
        assert!(required("StackId", " ").is_err());
        assert!(uuid("stack_id", "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff").is_ok());
        assert!(uuid("stack_id", "4a6c9851-3b0f-4f5f-b4ca-a14bf691fff").is_err());
    }
}
