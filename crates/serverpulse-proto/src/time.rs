//! Timestamps on the wire: RFC 3339, or naive ISO 8601 meaning UTC (dialect B).
//!
//! Everything past the edge is integer Unix milliseconds, the form both databases store.

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// How far ahead of the hub's clock an agent's timestamp may be before it is refused.
pub const MAX_FUTURE_SKEW_MS: i64 = 10 * 60 * 1000;

/// Parses `2025-06-21T20:30:00Z`, `2025-06-21T22:30:00+02:00` or the naive
/// `2025-06-21T20:30:00.123456` (UTC implied).
pub fn parse_timestamp(text: &str) -> Result<UnixMillis, String> {
    let text = text.trim();
    if let Ok(with_offset) = DateTime::parse_from_rfc3339(text) {
        return Ok(with_offset.timestamp_millis());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(naive.and_utc().timestamp_millis());
        }
    }
    Err("must be an RFC 3339 timestamp such as 2025-06-21T20:30:00Z".to_owned())
}

/// RFC 3339 with millisecond precision and `Z`, the form the hub writes.
pub fn format_timestamp(millis: UnixMillis) -> String {
    DateTime::<Utc>::from_timestamp_millis(millis)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_naive_and_zulu_agree() {
        let zulu = parse_timestamp("2025-06-21T20:30:00Z").unwrap();
        let offset = parse_timestamp("2025-06-21T22:30:00+02:00").unwrap();
        let naive = parse_timestamp("2025-06-21T20:30:00").unwrap();
        assert_eq!(zulu, offset);
        assert_eq!(zulu, naive);
        assert_eq!(zulu, 1_750_537_800_000);
        assert_eq!(parse_timestamp("2025-06-21T20:30:00.123456").unwrap(), zulu + 123);
    }

    #[test]
    fn garbage_is_refused() {
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("2025-13-01T00:00:00Z").is_err());
        assert!(parse_timestamp("").is_err());
    }

    #[test]
    fn formats_round_trip() {
        let t = 1_750_537_800_123;
        assert_eq!(format_timestamp(t), "2025-06-21T20:30:00.123Z");
        assert_eq!(parse_timestamp(&format_timestamp(t)).unwrap(), t);
    }
}
