//! JSON text written directly, for the fixed shapes on the hot path (the
//! answer and the acknowledgement), where serde's derived serializers escape
//! every field name and scan every value a byte at a time.

/// Append `text` to `out` as a JSON string, quotes included, escaped exactly
/// as serde_json escapes it.
pub(crate) fn push_string(out: &mut Vec<u8>, text: &str) {
    // Most strings need no escape. The check has no branch per byte, so it
    // runs a vector at a time; then the string is copied whole.
    let plain = text.bytes().fold(true, |plain, byte| {
        plain & (byte >= 0x20) & (byte != b'"') & (byte != b'\\')
    });
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        // Writing a string into a Vec cannot fail; if it did, the text
        // would be left out rather than written half.
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn pushed(text: &str) -> Vec<u8> {
        let mut out = b"[".to_vec();
        push_string(&mut out, text);
        out
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        for text in [
            "",
            "plain",
            "quote \" and backslash \\",
            "controls \u{0}\u{1f}\n\r\t",
            "del \u{7f} and ünïcødé and 😀",
        ] {
            let expected = [b"[".as_slice(), &serde_json::to_vec(text).expect("json")].concat();
            assert_eq!(pushed(text), expected, "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(text in any::<String>()) {
            let expected = [b"[".as_slice(), &serde_json::to_vec(&text).expect("json")].concat();
            prop_assert_eq!(pushed(&text), expected);
        }
    }
}
