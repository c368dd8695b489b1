//! Network interface counters from `/proc/net/dev`.

use std::collections::BTreeMap;

use serde::Serialize;
use serverpulse_proto::report::is_loopback_interface;

use super::{CollectError, Root, read};

/// Cumulative counters of one interface since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Interface {
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_packets: u64,
    pub tx_packets: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub rx_errors: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub tx_errors: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub rx_dropped: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub tx_dropped: u64,
}

/// Error and drop counters are almost always zero; reports leave them out then.
fn is_zero(value: &u64) -> bool {
    *value == 0
}

pub fn parse_net_dev(text: &str) -> BTreeMap<String, Interface> {
    let mut interfaces = BTreeMap::new();
    for line in text.lines() {
        let Some((name, counters)) = line.split_once(':') else { continue };
        let v: Vec<u64> = counters.split_whitespace().filter_map(|f| f.parse().ok()).collect();
        if v.len() < 16 {
            continue;
        }
        interfaces.insert(
            name.trim().to_owned(),
            Interface {
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            },
        );
    }
    interfaces
}

/// (received, sent) summed over every interface but loopback.
pub fn totals(interfaces: &BTreeMap<String, Interface>) -> (u64, u64) {
    interfaces
        .iter()
        .filter(|(name, _)| !is_loopback_interface(name))
        .fold((0, 0), |(rx, tx), (_, i)| (rx + i.rx_bytes, tx + i.tx_bytes))
}

pub fn read_interfaces(root: &Root) -> Result<BTreeMap<String, Interface>, CollectError> {
    Ok(parse_net_dev(&read(root, "proc/net/dev")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_skip_loopback() {
        let text = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 5000      50    0    0    0     0          0         0     5000      50    0    0    0     0       0          0
  eth0: 1000000   900   1    2    0     0          0         0   200000     400    0    3    0     0       0          0
 wlan0:     100     1    0    0    0     0          0         0       10       1    0    0    0     0       0          0
";
        let interfaces = parse_net_dev(text);
        assert_eq!(interfaces.len(), 3);
        assert_eq!(interfaces["eth0"].tx_dropped, 3);
        assert_eq!(totals(&interfaces), (1_000_100, 200_010));
    }
}
