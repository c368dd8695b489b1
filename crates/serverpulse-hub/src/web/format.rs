//! How figures read on the dashboard: percentages, byte rates, durations and "5 min ago",
//! the same way on every page (the browser's `app.js` mirrors these for live values).

/// `42.1 %`, or an en dash when unknown.
pub fn percent(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.1} %"))
}

/// `1.25`, or an en dash.
pub fn decimal(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

/// Bytes with a binary unit: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub fn bytes(value: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = value.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{value:.0} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A byte rate: `1.5 MiB/s`, or an en dash.
pub fn rate(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{}/s", bytes(v)))
}

/// A duration in seconds, coarsely: `3 d 4 h`, `5 h 12 min`, `42 s`.
pub fn duration(seconds: u64) -> String {
    let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3_600, seconds % 3_600 / 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {minutes} min")
    } else if minutes > 0 {
        format!("{minutes} min")
    } else {
        format!("{seconds} s")
    }
}

/// How long before `now` `at` was: `just now`, `5 min ago`, `3 d ago`; `never` for none.
pub fn ago(at: Option<i64>, now: i64) -> String {
    match at {
        None => "never".to_owned(),
        Some(at) if now - at < 5_000 => "just now".to_owned(),
        Some(at) => format!("{} ago", duration(u64::try_from((now - at) / 1000).unwrap_or(0))),
    }
}

/// RFC 3339 in UTC, for `datetime` attributes and tooltips.
pub fn timestamp(at: i64) -> String {
    serverpulse_proto::time::format_timestamp(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(percent(Some(42.06)), "42.1 %");
        assert_eq!(percent(None), "–");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(1536.0), "1.5 KiB");
        assert_eq!(rate(Some(3.5 * 1024.0 * 1024.0)), "3.5 MiB/s");
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(3 * 86_400 + 4 * 3_600 + 59), "3 d 4 h");
        assert_eq!(duration(5 * 3_600 + 12 * 60), "5 h 12 min");
        assert_eq!(ago(None, 0), "never");
        assert_eq!(ago(Some(1_000), 3_000), "just now");
        assert_eq!(ago(Some(0), 300_000), "5 min ago");
    }
}
