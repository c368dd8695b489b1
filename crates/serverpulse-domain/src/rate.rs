//! Cumulative counters (bytes since boot) turned into rates between consecutive reports.

/// One reading of a cumulative counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CounterReading {
    /// Agent time, Unix milliseconds.
    pub at: i64,
    pub value: u64,
}

/// Bytes per second between `previous` and `current`.
///
/// A counter that went down was reset (a reboot, a driver reload), never a negative
/// rate. If the host rebooted within the interval (`uptime_secs` shorter than the gap),
/// everything counted since boot happened inside it, so the rate is `value / uptime`;
/// otherwise the increase is unknowable and there is no rate for this interval.
pub fn counter_rate(
    previous: Option<CounterReading>,
    current: CounterReading,
    uptime_secs: Option<u64>,
) -> Option<f64> {
    let previous = previous?;
    let elapsed_ms = current.at.checked_sub(previous.at)?;
    if elapsed_ms <= 0 {
        return None;
    }
    if current.value >= previous.value {
        return Some((current.value - previous.value) as f64 * 1000.0 / elapsed_ms as f64);
    }
    match uptime_secs {
        Some(up) if up > 0 && (up as i64).saturating_mul(1000) <= elapsed_ms => Some(current.value as f64 / up as f64),
        _ => None,
    }
}

/// Agent time and the four byte counters of one report (received, sent, read, written).
pub type CounterSet = (i64, [Option<u64>; 4]);

/// The rate of each counter of `current` relative to `previous` (see [`counter_rate`]);
/// `uptime_secs` is `current`'s.
pub fn counter_rates(previous: Option<CounterSet>, current: CounterSet, uptime_secs: Option<u64>) -> [Option<f64>; 4] {
    let mut out = [None; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        let Some(value) = current.1[i] else { continue };
        let before = previous.and_then(|(at, counters)| counters[i].map(|value| CounterReading { at, value }));
        *slot = counter_rate(before, CounterReading { at: current.0, value }, uptime_secs);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at: i64, value: u64) -> CounterReading {
        CounterReading { at, value }
    }

    #[test]
    fn each_counter_against_its_own_previous_reading() {
        let previous = (0, [Some(1_000), None, Some(5_000), Some(7)]);
        let current = (10_000, [Some(2_000), Some(10), Some(4_000), None]);
        // rx steady, tx without a previous reading, read reset (no reboot within), write absent.
        assert_eq!(counter_rates(Some(previous), current, Some(86_400)), [Some(100.0), None, None, None]);
        assert_eq!(counter_rates(None, current, None), [None; 4]);
    }

    #[test]
    fn steady_rate() {
        assert_eq!(counter_rate(Some(at(0, 1_000)), at(30_000, 31_000), None), Some(1_000.0));
    }

    #[test]
    fn first_reading_has_no_rate() {
        assert_eq!(counter_rate(None, at(30_000, 31_000), None), None);
    }

    #[test]
    fn reset_after_reboot_counts_since_boot() {
        // 60 s gap, host up for 20 s, 2000 bytes since boot: 100 B/s.
        assert_eq!(counter_rate(Some(at(0, 9_000)), at(60_000, 2_000), Some(20)), Some(100.0));
    }

    #[test]
    fn reset_without_reboot_is_no_rate_never_negative() {
        assert_eq!(counter_rate(Some(at(0, 9_000)), at(60_000, 2_000), Some(86_400)), None);
        assert_eq!(counter_rate(Some(at(0, 9_000)), at(60_000, 2_000), None), None);
    }

    #[test]
    fn out_of_order_or_same_time_has_no_rate() {
        assert_eq!(counter_rate(Some(at(60_000, 1)), at(60_000, 2), None), None);
        assert_eq!(counter_rate(Some(at(90_000, 1)), at(60_000, 2), None), None);
    }
}
