//! Load averages (`/proc/loadavg`) and uptime (`/proc/uptime`).

use serde::Serialize;

use super::{CollectError, Root, read};

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Load {
    pub one: f64,
    pub five: f64,
    pub fifteen: f64,
    /// Runnable scheduling entities right now.
    pub running: u64,
    /// All scheduling entities (threads) on the host.
    pub threads: u64,
}

pub fn parse_loadavg(text: &str) -> Result<Load, CollectError> {
    const PATH: &str = "proc/loadavg";
    let fields: Vec<&str> = text.split_whitespace().collect();
    let number = |i: usize| -> Result<f64, CollectError> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| CollectError::parse(PATH, format!("field {i} is not a load")))
    };
    let (running, threads) = fields
        .get(3)
        .and_then(|f| f.split_once('/'))
        .map(|(r, t)| (r.parse().unwrap_or(0), t.parse().unwrap_or(0)))
        .unwrap_or((0, 0));
    Ok(Load { one: number(0)?, five: number(1)?, fifteen: number(2)?, running, threads })
}

pub fn read_load(root: &Root) -> Result<Load, CollectError> {
    parse_loadavg(&read(root, "proc/loadavg")?)
}

/// Whole seconds since boot.
pub fn parse_uptime(text: &str) -> Result<u64, CollectError> {
    text.split_whitespace()
        .next()
        .and_then(|f| f.parse::<f64>().ok())
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| v as u64)
        .ok_or_else(|| CollectError::parse("proc/uptime", "no uptime"))
}

pub fn read_uptime(root: &Root) -> Result<u64, CollectError> {
    parse_uptime(&read(root, "proc/uptime")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_and_uptime() {
        let load = parse_loadavg("0.52 0.40 0.31 3/712 98765\n").unwrap();
        assert_eq!((load.one, load.five, load.fifteen, load.running, load.threads), (0.52, 0.40, 0.31, 3, 712));
        assert!(parse_loadavg("nan 1 1 1/1 1").is_err());
        assert_eq!(parse_uptime("123456.78 200000.00\n").unwrap(), 123_456);
        assert!(parse_uptime("").is_err());
    }
}
