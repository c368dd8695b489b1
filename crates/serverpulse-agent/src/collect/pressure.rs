//! Pressure stall information (`/proc/pressure/{cpu,memory,io}`, Linux 4.20+): the share
//! of time tasks were stalled waiting for a resource. Absent on older kernels.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Root;

/// Averages over 10 s, 60 s and 300 s, in percent of wall time.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Stall {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

/// `some`: at least one task stalled; `full`: all non-idle tasks stalled at once.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct Pressure {
    pub some: Option<Stall>,
    pub full: Option<Stall>,
}

pub fn parse_pressure(text: &str) -> Pressure {
    let mut pressure = Pressure::default();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let kind = fields.next();
        let mut stall = Stall::default();
        for field in fields {
            let Some((key, value)) = field.split_once('=') else { continue };
            let value = value.parse::<f64>().unwrap_or(0.0);
            match key {
                "avg10" => stall.avg10 = value,
                "avg60" => stall.avg60 = value,
                "avg300" => stall.avg300 = value,
                _ => {}
            }
        }
        match kind {
            Some("some") => pressure.some = Some(stall),
            Some("full") => pressure.full = Some(stall),
            _ => {}
        }
    }
    pressure
}

/// Whatever resources this kernel reports; empty when PSI is off.
pub fn read_pressure(root: &Root) -> BTreeMap<&'static str, Pressure> {
    ["cpu", "memory", "io"]
        .into_iter()
        .filter_map(|resource| {
            let text = root.read(&format!("proc/pressure/{resource}")).ok()?;
            Some((resource, parse_pressure(&text)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_and_full() {
        let p = parse_pressure(
            "some avg10=1.50 avg60=0.75 avg300=0.10 total=12345\nfull avg10=0.50 avg60=0.25 avg300=0.00 total=999\n",
        );
        assert_eq!(p.some.unwrap().avg10, 1.5);
        assert_eq!(p.full.unwrap().avg60, 0.25);
        assert!(parse_pressure("some avg10=2.00 avg60=0 avg300=0 total=1\n").full.is_none());
    }
}
