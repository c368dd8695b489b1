//! Two captured states of a host → the CPU percentages and rates they imply.

use serverpulse_agent::collect::Root;
use serverpulse_agent::collector::Collector;

use crate::fixture::{self, Counters, FixedSpace};

#[test]
fn cpu_percent_and_rates_from_two_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let before = Counters { cpu: (1_000, 500, 8_500), eth0: (10_000, 2_000), sda_sectors: (100, 200), uptime: 3_600 };
    fixture::write(dir.path(), before);
    let mut collector = Collector::new(Root::new(dir.path()), Box::new(FixedSpace));
    collector.prime(1_000_000).unwrap();

    // 30 s later: 300 user + 150 system + 1050 idle jiffies → 30 % busy.
    let after = Counters { cpu: (1_300, 650, 9_550), eth0: (40_000, 5_000), sda_sectors: (700, 260), uptime: 3_630 };
    fixture::write(dir.path(), after);
    let c = collector.collect_once(1_030_000).unwrap();

    assert!((c.flat.cpu_usage - 30.0).abs() < 1e-9, "{}", c.flat.cpu_usage);
    assert!((c.detail.cpu.split.user - 20.0).abs() < 1e-9);
    assert!((c.detail.cpu.split.system - 10.0).abs() < 1e-9);
    assert_eq!(c.detail.cpu.cores, 2);
    assert!((c.flat.memory_usage - 25.0).abs() < 1e-9);
    assert_eq!(c.flat.disk_usage, Some(26.32), "25 used of 95 usable, to two decimals");
    assert_eq!(c.flat.uptime, 3_630);
    assert_eq!(c.flat.load_average, 0.25);
    assert_eq!((c.flat.network_rx, c.flat.network_tx), (40_000, 5_000), "loopback excluded");
    assert_eq!((c.flat.disk_io_read, c.flat.disk_io_write), (700 * 512, 260 * 512), "partitions not added twice");

    let eth0 = &c.detail.interfaces["eth0"];
    assert!((eth0.rx_rate - 1_000.0).abs() < 1e-9, "30,000 bytes in 30 s");
    assert!((eth0.tx_rate - 100.0).abs() < 1e-9);
    let sda = &c.detail.disks["sda"];
    assert!((sda.read_rate - 10240.0).abs() < 1e-9);
    assert_eq!(c.detail.filesystems.len(), 1, "pseudo filesystems skipped");
    assert_eq!(c.detail.processes.total, 1);
    assert_eq!(c.detail.processes.top_cpu[0].name, "worker");
}
