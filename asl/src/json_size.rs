//! The size of a JSON value as AWS counts it (its compact text), without building the text:
//! batch byte limits and the 256 KiB result limit are checked on every item and result.

use serde_json::Value;

/// The length in bytes of `value`'s compact JSON text.
pub fn json_size(value: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len() as u64;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a `Value` cannot fail: string keys only, and the sink accepts everything.
    serde_json::to_writer(&mut count, value).map_or(0, |()| count.0)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn sizes_match_the_compact_text() {
        for value in [json!(null), json!({"a": [1, 2.5, "é\n"], "b": {}}), json!(1e5)] {
            assert_eq!(super::json_size(&value), serde_json::to_string(&value).unwrap().len() as u64);
        }
    }
}
