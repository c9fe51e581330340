//! Timestamps as AWS reads and writes them.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};

/// Parses an ISO-8601 extended offset date-time the way AWS accepts it in `Timestamp`,
/// `TimestampPath` and the `Timestamp...` Choice operators: RFC 3339 with an uppercase
/// `T` separator and a `Z` or numeric offset (features.md §1.3 Wait). No zone, a space
/// separator or out-of-range fields are rejected.
pub fn parse(text: &str) -> Option<DateTime<FixedOffset>> {
    let bytes = text.as_bytes();
    if bytes.len() < 20 || bytes[10] != b'T' {
        return None;
    }
    let last = *bytes.last()?;
    if last == b'z' {
        return None;
    }
    DateTime::parse_from_rfc3339(text).ok()
}

/// Formats a time as AWS does in the Context Object and result files: UTC, millisecond
/// precision, `Z` suffix.
pub fn format(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_aws_forms() {
        assert!(parse("2016-03-14T01:59:00Z").is_some());
        assert!(parse("2016-03-14T01:59:00.123Z").is_some());
        assert!(parse("2016-03-14T01:59:00+01:00").is_some());
        for bad in [
            "2016-12-05T21:29:29",
            "2016-12-05 21:29:29Z",
            "05-12-2016T21:29:29Z",
            "2016-13-05T21:29:29Z",
            "2016-12-05T25:29:29Z",
            "2016-12-05t21:29:29Z",
            "",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }
}
