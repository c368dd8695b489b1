//! Memory and swap from `/proc/meminfo`. Usage is based on `MemAvailable`, the kernel's
//! estimate of what can be allocated without swapping (page cache counts as available).

use serde::Serialize;

use super::{CollectError, Root, read};

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Memory {
    pub total: u64,
    pub available: u64,
    pub used: u64,
    pub free: u64,
    pub buffers: u64,
    pub cached: u64,
    pub shared: u64,
    /// `(total - available) / total`, percent.
    pub percent: f64,
    pub swap_total: u64,
    pub swap_used: u64,
    pub swap_percent: f64,
}

pub fn parse_meminfo(text: &str) -> Result<Memory, CollectError> {
    const PATH: &str = "proc/meminfo";
    let get = |key: &str| -> Option<u64> {
        text.lines().find_map(|line| {
            let (name, rest) = line.split_once(':')?;
            if name != key {
                return None;
            }
            let kib: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(kib * 1024)
        })
    };
    let total = get("MemTotal").ok_or_else(|| CollectError::parse(PATH, "no MemTotal"))?;
    let free = get("MemFree").unwrap_or(0);
    let buffers = get("Buffers").unwrap_or(0);
    let cached = get("Cached").unwrap_or(0) + get("SReclaimable").unwrap_or(0);
    // Kernels before 3.14 lack MemAvailable; free + buffers + cache approximates it.
    let available = get("MemAvailable").unwrap_or(free + buffers + cached).min(total);
    let swap_total = get("SwapTotal").unwrap_or(0);
    let swap_used = swap_total.saturating_sub(get("SwapFree").unwrap_or(0));
    let percent = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 * 100.0 / whole as f64 };
    Ok(Memory {
        total,
        available,
        used: total - available,
        free,
        buffers,
        cached,
        shared: get("Shmem").unwrap_or(0),
        percent: (percent(total - available, total) * 100.0).round() / 100.0,
        swap_total,
        swap_used,
        swap_percent: (percent(swap_used, swap_total) * 100.0).round() / 100.0,
    })
}

pub fn read_memory(root: &Root) -> Result<Memory, CollectError> {
    parse_meminfo(&read(root, "proc/meminfo")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_based_usage() {
        let text = "MemTotal:        8000000 kB\nMemFree:          500000 kB\nMemAvailable:    2000000 kB\nBuffers:          100000 kB\nCached:          1500000 kB\nSReclaimable:     100000 kB\nShmem:             50000 kB\nSwapTotal:       1000000 kB\nSwapFree:         750000 kB\n";
        let m = parse_meminfo(text).unwrap();
        assert_eq!(m.total, 8_000_000 * 1024);
        assert_eq!(m.used, 6_000_000 * 1024);
        assert!((m.percent - 75.0).abs() < 1e-9);
        assert_eq!(m.cached, 1_600_000 * 1024);
        assert!((m.swap_percent - 25.0).abs() < 1e-9);
        assert!(parse_meminfo("MemFree: 1 kB\n").is_err());
    }
}
