//! Finding bytes outside the strings of JSON text, 64 bytes at a time ([`crate::byte_block`]):
//! quotes, backslashes and the wanted bytes as bitmasks, the bytes inside strings the prefix
//! XOR of the unescaped quotes; in typical payloads a quote comes every few bytes.

use crate::byte_block::{prefix_xor, Block};

/// Calls `visit(offset, byte)`, in order, for each byte of `bytes` that is one of `wanted` and
/// lies outside strings. `bytes` must be JSON text (a backslash only inside strings, where
/// it escapes the byte after it); `wanted` must not hold `"` or `\`.
pub(crate) fn for_each<const N: usize>(bytes: &[u8], wanted: [u8; N], mut visit: impl FnMut(usize, u8)) {
    debug_assert!(!wanted.contains(&b'"') && !wanted.contains(&b'\\'), "quotes and backslashes are the strings' own");
    // Carried from one block to the next: inside a string at its end; its last byte an
    // unescaped backslash.
    let (mut in_string, mut escape_next) = (0u64, false);
    for at in (0..bytes.len()).step_by(64) {
        let (block, valid) = Block::at(bytes, at);
        // The padding of a short last block is no text (and `wanted` may hold a zero).
        let (quotes, backslashes) = (block.equal(b'"') & valid, block.equal(b'\\') & valid);
        let hits = block.equal_any(wanted) & valid;
        let escaped = if backslashes == 0 && !escape_next { 0 } else { escaped_bytes(backslashes, &mut escape_next) };
        let inside = prefix_xor(quotes & !escaped) ^ in_string;
        in_string = 0u64.wrapping_sub(inside >> 63);
        let mut outside = hits & !inside;
        while outside != 0 {
            let offset = at + outside.trailing_zeros() as usize;
            visit(offset, bytes[offset]);
            outside &= outside - 1;
        }
    }
}

/// The bytes a backslash escapes: each backslash not itself escaped escapes the next byte.
/// (Rare in payloads, so a loop over the backslashes.)
fn escaped_bytes(backslashes: u64, escape_next: &mut bool) -> u64 {
    let mut escaped = u64::from(*escape_next);
    let mut rest = backslashes & !escaped;
    *escape_next = false;
    while rest != 0 {
        let at = rest.trailing_zeros();
        if at == 63 {
            *escape_next = true;
        } else {
            escaped |= 1 << (at + 1);
        }
        // The escaped byte, if a backslash, escapes nothing.
        rest &= !((1u64 << at) | escaped);
    }
    escaped
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The same, byte by byte.
    fn reference(bytes: &[u8], wanted: &[u8]) -> Vec<(usize, u8)> {
        let (mut in_string, mut escaped, mut found) = (false, false, Vec::new());
        for (i, &b) in bytes.iter().enumerate() {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
            } else if b == b'"' {
                in_string = true;
            } else if wanted.contains(&b) {
                found.push((i, b));
            }
        }
        found
    }

    fn found<const N: usize>(bytes: &[u8], wanted: [u8; N]) -> Vec<(usize, u8)> {
        let mut found = Vec::new();
        for_each(bytes, wanted, |i, b| found.push((i, b)));
        found
    }

    #[test]
    fn escapes_and_strings_across_blocks() {
        let long = format!(r#"{{"{}\\":"a\"b,{}","c":[1,2]}}"#, "k".repeat(62), "x".repeat(70));
        for text in [r#"{"a":"x,y","b":[1,"\\",2]}"#, r#"["\"", ",", "\\\"", 3]"#, &long, ""] {
            assert_eq!(found(text.as_bytes(), [b',', b':', b'[', b']']), reference(text.as_bytes(), b",:[]"), "{text}");
        }
    }

    /// Structure, or a string whose contents hold structure, escaped quotes and backslashes
    /// (JSON escapes only inside strings).
    fn token() -> impl Strategy<Value = String> {
        prop_oneof![
            prop::sample::select(vec![",", ":", "[", "]", "{", "}", "1", "é"]).prop_map(String::from),
            prop::collection::vec(prop::sample::select(vec!["a", ",", ":", "]", "\\\\", "\\\"", "\\n"]), 0..40)
                .prop_map(|parts| format!("\"{}\"", parts.concat())),
        ]
    }

    proptest! {
        #[test]
        fn agrees_with_a_byte_by_byte_scan(tokens in prop::collection::vec(token(), 0..80)) {
            let text = tokens.concat().into_bytes();
            prop_assert_eq!(found(&text, [b',', b':']), reference(&text, b",:"));
            prop_assert_eq!(found(&text, [b'[', b']', b'{', b'}', b',']), reference(&text, b"[]{},"));
        }
    }
}
