//! Physical resource ids, by ROS's rules (not AWS's).
//!
//! - Create: the handler's id, or [`generate`]d from the stack id, the logical
//!   id and a suffix derived from the request.
//! - Update and Delete: the id from the request, echoed. ROS does not allow a
//!   custom resource's id to change on update.
//! - A failed Create answers with a [`failed_create`] marker. A Delete that
//!   carries the marker, an empty id or no id succeeds without running the
//!   handler: there is nothing to delete.

use sha2::{Digest, Sha256};

use crate::response::MAX_PHYSICAL_ID_BYTES;

/// Every failed-create marker starts with this.
pub const FAILED_CREATE_PREFIX: &str = "stackhook-create-failed";

/// Length of the derived suffix, in base-36 digits. 36^10 values (about 2^51)
/// make a clash between two requests for one stack and logical id practically
/// impossible.
const SUFFIX_LEN: usize = 10;

/// The id for a Create whose handler did not choose one:
/// `<stack id>-<logical id>-<suffix>`, within 255 bytes.
///
/// The suffix is derived from the request: ten base-36 digits of
/// a SHA-256 of the stack id, the logical id and the request id (each
/// prefixed with its length, so no two triples hash alike). The same request
/// therefore always gets the same id: a Create run again after a crash (its
/// answer or its delivered mark lost) answers with the id ROS may already
/// have, and a handler that names what it creates after the id finds its
/// first attempt. Another request for the same resource (a new Create with
/// its own request id) gets another id.
pub fn generate(stack_id: &str, logical_resource_id: &str, request_id: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    // Built in one buffer: this runs for every Create without an id.
    let mut id = String::with_capacity(stack_id.len().min(64) + logical_resource_id.len() + 12);
    push_clean(&mut id, stack_id, 64);
    if !id.is_empty() {
        id.push('-');
    }
    let room = MAX_PHYSICAL_ID_BYTES - id.len() - SUFFIX_LEN - 1;
    let before_logical = id.len();
    push_clean(&mut id, logical_resource_id, room);
    if id.len() > before_logical {
        id.push('-');
    }
    // SUFFIX_LEN base-36 digits (36^10 < 2^64) from the digest's first
    // eight bytes; the modulo's bias is below one part in 5,000.
    let digest = request_digest(stack_id, logical_resource_id, request_id);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut derived = u64::from_le_bytes(first) % 36u64.pow(SUFFIX_LEN as u32);
    for _ in 0..SUFFIX_LEN {
        id.push(char::from(ALPHABET[(derived % 36) as usize]));
        derived /= 36;
    }
    id
}

/// SHA-256 of the three identifiers, each prefixed with its length in bytes.
fn request_digest(stack_id: &str, logical_resource_id: &str, request_id: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in [stack_id, logical_resource_id, request_id] {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part.as_bytes());
    }
    hash.finalize().into()
}

/// The marker id a failed Create reports, recognisable by [`is_placeholder`].
pub fn failed_create(request_id: &str) -> String {
    let suffix = clean(request_id, 64);
    if suffix.is_empty() {
        FAILED_CREATE_PREFIX.to_string()
    } else {
        format!("{FAILED_CREATE_PREFIX}-{suffix}")
    }
}

/// Whether an id names no real resource: absent, blank, or a failed-create
/// marker. A Delete for such an id succeeds without running the handler.
pub fn is_placeholder(id: Option<&str>) -> bool {
    match id.map(str::trim) {
        None | Some("") => true,
        Some(id) => id.starts_with(FAILED_CREATE_PREFIX),
    }
}

/// Check an id a handler chose.
///
/// # Errors
/// A sentence saying what is wrong with it.
pub fn validate(id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err("the physical id is empty".into());
    }
    if id.len() > MAX_PHYSICAL_ID_BYTES {
        return Err(format!(
            "the physical id is {} bytes, over ROS's limit of {MAX_PHYSICAL_ID_BYTES}",
            id.len()
        ));
    }
    // ASCII ids (nearly all) are checked byte by byte; others by char, for
    // the C1 controls (U+0080 to U+009F).
    let has_control = if id.is_ascii() {
        id.bytes().any(|b| b.is_ascii_control())
    } else {
        id.chars().any(char::is_control)
    };
    if has_control {
        return Err("the physical id contains control characters".into());
    }
    if id.starts_with(FAILED_CREATE_PREFIX) {
        return Err(format!(
            "the physical id starts with `{FAILED_CREATE_PREFIX}`, which marks failed creates"
        ));
    }
    Ok(())
}

/// Check an id from [`generate`]. It is non-empty, within the length limit
/// and free of control characters by construction (its tests say so); only a
/// stack id that starts with the failed-create marker can make it wrong.
///
/// # Errors
/// The same sentence as [`validate`] for that case.
pub(crate) fn validate_generated(id: &str) -> Result<(), String> {
    if id.starts_with(FAILED_CREATE_PREFIX) {
        return validate(id);
    }
    debug_assert!(validate(id).is_ok(), "generated an invalid id: {id}");
    Ok(())
}

/// Keep the characters that are safe in an id, at most `max` bytes of them.
fn clean(text: &str, max: usize) -> String {
    let mut kept = String::new();
    push_clean(&mut kept, text, max);
    kept
}

/// Append at most `max` of `text`'s characters that an id may contain.
///
/// Every character an id may contain is ASCII, and no byte of a multi-byte
/// UTF-8 character is, so filtering bytes keeps exactly the same characters
/// as filtering chars, without decoding.
fn push_clean(out: &mut String, text: &str, max: usize) {
    let allowed = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    // Stack ids and logical ids from ROS are clean: copied whole.
    if text.len() <= max && text.bytes().all(|b| allowed(&b)) {
        out.push_str(text);
        return;
    }
    out.extend(text.bytes().filter(allowed).take(max).map(char::from));
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "4a6c9851-3b0f-4f5f-b4ca-a14bf691ffff";

    #[test]
    fn a_generated_id_that_would_read_as_a_failed_create_is_refused() {
        let id = generate(FAILED_CREATE_PREFIX, "Res", "r1");
        assert_eq!(validate_generated(&id), validate(&id));
        assert!(validate_generated(&id).is_err());
        let fine = generate(STACK, "Res", "r1");
        assert_eq!(validate_generated(&fine), Ok(()));
    }

    #[test]
    fn the_same_request_always_gets_the_same_id() {
        let first = generate(STACK, "MyResource", "req-1");
        assert_eq!(generate(STACK, "MyResource", "req-1"), first);
        assert!(
            first.starts_with(&format!("{STACK}-MyResource-")),
            "{first}"
        );
        // Derived from the identifiers as given, not as cleaned into the id.
        assert_eq!(generate("s!", "Res", "r"), generate("s!", "Res", "r"));
        assert_ne!(generate("s!", "Res", "r"), generate("s", "Res", "r"));
    }

    #[test]
    fn another_request_for_the_same_resource_gets_another_id() {
        let first = generate(STACK, "MyResource", "req-1");
        assert_ne!(generate(STACK, "MyResource", "req-2"), first);
        // The identifiers are length-prefixed: moving text from one to the
        // next changes the id, though the concatenation is the same.
        assert_ne!(generate("s", "ab", "c"), generate("s", "a", "bc"));
        assert_ne!(
            generate("", "", "abc")[..SUFFIX_LEN],
            generate("", "a", "bc")[2..]
        );
    }

    #[test]
    fn the_suffix_is_a_sha256_of_the_length_prefixed_identifiers() {
        // Worked by hand from the rule, so a change to it shows here.
        let mut hash = Sha256::new();
        for part in ["s", "L", "r"] {
            hash.update(1u64.to_le_bytes());
            hash.update(part.as_bytes());
        }
        let digest: [u8; 32] = hash.finalize().into();
        let mut n = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
            % 36u64.pow(SUFFIX_LEN as u32);
        let mut suffix = String::new();
        for _ in 0..SUFFIX_LEN {
            let digit = (n % 36) as u32;
            suffix.push(if digit < 26 {
                char::from(b'a' + digit as u8)
            } else {
                char::from_digit(digit - 26, 10).expect("a digit")
            });
            n /= 36;
        }
        assert_eq!(generate("s", "L", "r"), format!("s-L-{suffix}"));
    }

    #[test]
    fn generated_ids_are_bounded() {
        let a = generate(STACK, "MyResource", "r");
        assert!(validate(&a).is_ok());
        let long = generate(&"s".repeat(500), &"L".repeat(500), &"r".repeat(500));
        assert!(long.len() <= MAX_PHYSICAL_ID_BYTES);
        assert!(validate(&long).is_ok());
        assert!(validate(&generate("", "", "")).is_ok());
        assert_eq!(generate("", "", "r").len(), SUFFIX_LEN);
        let no_stack = generate("", "Res!", "r");
        assert!(no_stack.starts_with("Res-"), "{no_stack}");
        assert_eq!(no_stack.len(), 4 + SUFFIX_LEN);
        let no_logical = generate("s-1", "", "r");
        assert!(no_logical.starts_with("s-1-"), "{no_logical}");
        assert_eq!(no_logical.len(), 4 + SUFFIX_LEN);
        let exact = generate(&"s".repeat(64), &"L".repeat(500), "r");
        assert_eq!(exact.len(), MAX_PHYSICAL_ID_BYTES);
        let unicode = generate("日本-stack", "Ünï", "r\u{0}");
        assert!(validate(&unicode).is_ok(), "{unicode:?}");
    }

    #[test]
    fn every_suffix_digit_spans_the_alphabet() {
        let ids: Vec<String> = (0..3000)
            .map(|n| generate("", "", &format!("request-{n}")))
            .collect();
        for position in 0..SUFFIX_LEN {
            let mut seen = std::collections::HashSet::new();
            for id in &ids {
                let digit = id.as_bytes()[position];
                assert!(digit.is_ascii_lowercase() || digit.is_ascii_digit(), "{id}");
                seen.insert(digit);
            }
            assert_eq!(
                seen.len(),
                36,
                "position {position} takes {} values",
                seen.len()
            );
        }
    }

    #[test]
    fn cleaning_bytes_keeps_what_cleaning_chars_kept() {
        let by_chars = |text: &str, max: usize| -> String {
            text.chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .take(max)
                .collect()
        };
        for text in [
            "",
            "Plain-id_1.2",
            "ünïcødé-ß-Ω",
            "a\u{0085}b\u{200b}c",
            "日本-stack-1",
            "x/y z:1",
        ] {
            for max in [0, 3, 64] {
                assert_eq!(clean(text, max), by_chars(text, max), "{text:?} {max}");
            }
        }
    }

    #[test]
    fn control_characters_are_refused_in_ascii_and_unicode_ids() {
        assert!(validate("ok-id").is_ok());
        assert!(validate("ünïcødé-id").is_ok());
        for bad in ["a\tb", "a\u{7f}b", "ünï\u{85}", "a\u{9f}"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn placeholders() {
        assert!(is_placeholder(None));
        assert!(is_placeholder(Some(" ")));
        assert!(is_placeholder(Some(&failed_create("req-1"))));
        assert!(!is_placeholder(Some("i-123")));
    }

    #[test]
    fn validate_names_the_problem() {
        assert!(validate("").unwrap_err().contains("empty"));
        assert!(
            validate(&"x".repeat(256))
                .unwrap_err()
                .contains("256 bytes")
        );
        assert!(validate("a\nb").unwrap_err().contains("control"));
        assert!(validate(&failed_create("r")).is_err());
        assert!(validate(&"x".repeat(255)).is_ok());
    }
}
