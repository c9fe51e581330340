//! Base64 decoding as lenient as AWS's `States.Base64Decode`.
//!
//! Observed on AWS: `'!!!invalid!!!'`, `'abc'` (length not a multiple of 4), `'ab==cd'`
//! and `' YWJjZA== '` all decode instead of failing. This matches a decoder that skips
//! every character outside the alphabet, stops at the first `=` and drops the bits of an
//! incomplete last byte, which is what is done here. Both the standard (`+/`) and the
//! URL-safe (`-_`) alphabets are read.

/// Decodes whatever Base64 content `text` has.
pub(crate) fn decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut buffer: u32 = 0;
    let mut bits = 0u32;
    for c in text.chars() {
        let sextet = match c {
            'A'..='Z' => c as u32 - 'A' as u32,
            'a'..='z' => c as u32 - 'a' as u32 + 26,
            '0'..='9' => c as u32 - '0' as u32 + 52,
            '+' | '-' => 62,
            '/' | '_' => 63,
            '=' => break,
            _ => continue,
        };
        buffer = (buffer << 6) | sextet;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    out
}
