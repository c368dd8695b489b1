//! A fake host: a directory with the `/proc` and `/sys` files the collectors read, whose
//! counters tests move forward between collections.

use std::path::Path;

use serverpulse_agent::collect::disk::{FsSpace, SpaceSource};

/// Cumulative counters of the fake host.
#[derive(Debug, Clone, Copy)]
pub struct Counters {
    /// user, system, idle jiffies of the whole machine (split evenly over two cores).
    pub cpu: (u64, u64, u64),
    pub eth0: (u64, u64),
    pub sda_sectors: (u64, u64),
    pub uptime: u64,
}

pub fn write(dir: &Path, c: Counters) {
    let put = |relative: &str, text: String| {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    let (user, system, idle) = c.cpu;
    put(
        "proc/stat",
        format!(
            "cpu  {user} 0 {system} {idle} 0 0 0 0 0 0\ncpu0 {} 0 {} {} 0 0 0 0 0 0\ncpu1 {} 0 {} {} 0 0 0 0 0 0\nctxt 1000\nbtime 1750451400\nprocs_running 1\nprocs_blocked 0\n",
            user / 2,
            system / 2,
            idle / 2,
            user - user / 2,
            system - system / 2,
            idle - idle / 2
        ),
    );
    put(
        "proc/meminfo",
        "MemTotal: 4000000 kB\nMemFree: 1000000 kB\nMemAvailable: 3000000 kB\nBuffers: 0 kB\nCached: 1000000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n".into(),
    );
    put("proc/loadavg", "0.25 0.20 0.10 1/100 4242\n".into());
    put("proc/uptime", format!("{}.50 100.00\n", c.uptime));
    put(
        "proc/net/dev",
        format!(
            "Inter-| header\n face | header\n    lo: 777 1 0 0 0 0 0 0 777 1 0 0 0 0 0 0\n  eth0: {} 10 0 0 0 0 0 0 {} 5 0 0 0 0 0 0\n",
            c.eth0.0, c.eth0.1
        ),
    );
    put(
        "proc/diskstats",
        format!(
            "   8 0 sda 10 0 {} 5 20 0 {} 9 0 12 14 0 0 0 0\n   8 1 sda1 10 0 {} 5 20 0 {} 9 0 12 14 0 0 0 0\n",
            c.sda_sectors.0, c.sda_sectors.1, c.sda_sectors.0, c.sda_sectors.1
        ),
    );
    std::fs::create_dir_all(dir.join("sys/block/sda")).unwrap();
    put("proc/self/mounts", "proc /proc proc rw 0 0\n/dev/sda1 / ext4 rw 0 0\ntmpfs /run tmpfs rw 0 0\n".into());
    put("proc/4242/stat", "4242 (worker) R 1 1 1 0 -1 0 0 0 0 0 300 100 0 0 20 0 1 0 100 1000 256 0 0\n".into());
}

/// `/` is a 100-unit disk with 25 used and 70 available to users.
#[derive(Debug, Clone, Copy)]
pub struct FixedSpace;

impl SpaceSource for FixedSpace {
    fn space(&self, mount_point: &str) -> std::io::Result<FsSpace> {
        match mount_point {
            "/" => Ok(FsSpace { total: 100, free: 75, available: 70 }),
            other => Err(std::io::Error::new(std::io::ErrorKind::NotFound, other.to_owned())),
        }
    }
}
