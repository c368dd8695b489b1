//! Exponential back-off with jitter, so a fleet of agents does not hammer a hub that is
//! coming back up all at the same second.

/// Delays double from `base_ms` up to `max_ms`; each is spread by ±20 %.
#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: i64,
    max_ms: i64,
    failures: u32,
    seed: u64,
}

impl Backoff {
    pub fn new(base_ms: i64, max_ms: i64) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        Self { base_ms, max_ms, failures: 0, seed }
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Records a failure and returns how long to wait before the next try.
    pub fn next_delay_ms(&mut self) -> i64 {
        let exponent = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let delay = self.base_ms.saturating_mul(1 << exponent).min(self.max_ms);
        // xorshift: cheap, and good enough to spread retries.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let spread = (self.seed % 401) as i64 - 200; // −200‰ … +200‰
        (delay + delay * spread / 1000).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut backoff = Backoff::new(1_000, 60_000);
        let delays: Vec<i64> = (0..10).map(|_| backoff.next_delay_ms()).collect();
        for (i, delay) in delays.iter().enumerate() {
            let nominal = (1_000i64 << i).min(60_000);
            assert!(*delay >= nominal * 8 / 10 && *delay <= nominal * 12 / 10, "try {i}: {delay}");
        }
        assert_eq!(backoff.failures(), 10);
        backoff.reset();
        assert!(backoff.next_delay_ms() <= 1_200);
    }
}
