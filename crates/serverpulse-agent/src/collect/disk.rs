//! Filesystem usage (as users see it, from `statvfs`) and block-device I/O (`/proc/diskstats`).

use std::collections::BTreeMap;

use serde::Serialize;

use super::mounts::Mount;
use super::{CollectError, Root, read};

/// Sizes of one filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsSpace {
    pub total: u64,
    pub free: u64,
    /// Free space unprivileged users may use (`f_bavail`): what `df` shows as available.
    pub available: u64,
}

/// Where filesystem sizes come from: `statvfs` on a host, a table in tests.
pub trait SpaceSource {
    fn space(&self, mount_point: &str) -> std::io::Result<FsSpace>;
}

/// `statvfs(2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statvfs;

impl SpaceSource for Statvfs {
    fn space(&self, mount_point: &str) -> std::io::Result<FsSpace> {
        let stat = rustix::fs::statvfs(mount_point)?;
        let unit = stat.f_frsize;
        Ok(FsSpace {
            total: stat.f_blocks.saturating_mul(unit),
            free: stat.f_bfree.saturating_mul(unit),
            available: stat.f_bavail.saturating_mul(unit),
        })
    }
}

/// One filesystem in a report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Filesystem {
    pub mount: String,
    pub device: String,
    pub fstype: String,
    pub total: u64,
    pub used: u64,
    pub available: u64,
    /// `used / (used + available)`: the share of what users can fill, as `df` computes it.
    pub percent: f64,
}

pub fn filesystem(mount: &Mount, space: FsSpace) -> Filesystem {
    let used = space.total.saturating_sub(space.free);
    let usable = used + space.available;
    Filesystem {
        mount: mount.mount_point.clone(),
        device: mount.device.clone(),
        fstype: mount.fstype.clone(),
        total: space.total,
        used,
        available: space.available,
        percent: if usable == 0 { 0.0 } else { (used as f64 * 10_000.0 / usable as f64).round() / 100.0 },
    }
}

/// Usage of every mount the source can measure; unreadable ones (a hung NFS share, a
/// permission error) are skipped rather than failing the whole collection.
pub fn filesystems(mounts: &[Mount], source: &dyn SpaceSource) -> Vec<Filesystem> {
    mounts
        .iter()
        .filter_map(|m| source.space(&m.mount_point).ok().map(|space| filesystem(m, space)))
        .filter(|fs| fs.total > 0)
        .collect()
}

/// Cumulative I/O of one block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DiskIo {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
    /// Milliseconds spent doing I/O.
    pub busy_ms: u64,
}

/// The kernel always counts `/proc/diskstats` sectors in 512-byte units.
const SECTOR: u64 = 512;

/// Devices that are not disks of their own: loop files, RAM disks, and layers over other
/// disks (device-mapper, md RAID) whose I/O is already counted on the disks below.
fn is_virtual(name: &str) -> bool {
    ["loop", "ram", "zram", "dm-", "md", "nbd", "sr"].iter().any(|p| name.starts_with(p))
}

/// Whole disks (those in `/sys/block`), each with its cumulative I/O. Partitions are
/// left out: their I/O is part of their disk's.
pub fn parse_diskstats(text: &str, whole_disks: &[String]) -> BTreeMap<String, DiskIo> {
    let mut disks = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 14 {
            continue;
        }
        let name = fields[2];
        if !whole_disks.iter().any(|d| d == name) || name.starts_with("loop") || name.starts_with("ram") {
            continue;
        }
        let n = |i: usize| fields[i].parse::<u64>().unwrap_or(0);
        disks.insert(
            name.to_owned(),
            DiskIo {
                reads: n(3),
                read_bytes: n(5).saturating_mul(SECTOR),
                writes: n(7),
                write_bytes: n(9).saturating_mul(SECTOR),
                busy_ms: n(12),
            },
        );
    }
    disks
}

/// Sum over physical disks, the host's total I/O.
pub fn total_io(disks: &BTreeMap<String, DiskIo>) -> DiskIo {
    disks.iter().filter(|(name, _)| !is_virtual(name)).fold(DiskIo::default(), |sum, (_, d)| DiskIo {
        read_bytes: sum.read_bytes + d.read_bytes,
        write_bytes: sum.write_bytes + d.write_bytes,
        reads: sum.reads + d.reads,
        writes: sum.writes + d.writes,
        busy_ms: sum.busy_ms + d.busy_ms,
    })
}

pub fn read_disks(root: &Root) -> Result<BTreeMap<String, DiskIo>, CollectError> {
    let text = read(root, "proc/diskstats")?;
    // Which of the devices are whole disks (partitions are not in /sys/block): listed
    // again only when the set of devices changes.
    let devices: Vec<&str> = text.lines().filter_map(|line| line.split_whitespace().nth(2)).collect();
    let whole = root.list_for("sys/block", &devices.join(" ")).map_err(|e| CollectError::read("sys/block", e))?;
    Ok(parse_diskstats(&text, &whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_as_df_shows_it() {
        let mount = Mount { device: "/dev/sda1".into(), mount_point: "/".into(), fstype: "ext4".into() };
        // 100 GB disk, 40 GB free of which 35 GB usable by users (5 % reserved for root).
        let fs = filesystem(&mount, FsSpace { total: 100, free: 40, available: 35 });
        assert_eq!(fs.used, 60);
        assert_eq!(fs.percent, 63.16);
    }

    #[test]
    fn diskstats_whole_disks_only() {
        let text = "\
   8       0 sda 100 0 2000 50 200 0 4000 80 0 120 130 0 0 0 0
   8       1 sda1 90 0 1800 45 190 0 3900 70 0 100 110 0 0 0 0
 253       0 dm-0 80 0 1600 40 150 0 3000 60 0 90 100 0 0 0 0
   7       0 loop0 5 0 10 1 0 0 0 0 0 1 1 0 0 0 0
 259       0 nvme0n1 10 0 8 5 20 0 16 8 0 12 13
";
        let whole = ["sda", "dm-0", "loop0", "nvme0n1"].map(String::from);
        let disks = parse_diskstats(text, &whole);
        assert_eq!(disks.keys().collect::<Vec<_>>(), ["dm-0", "nvme0n1", "sda"]);
        assert_eq!(disks["sda"].read_bytes, 2000 * 512);
        assert_eq!(disks["sda"].write_bytes, 4000 * 512);
        let total = total_io(&disks);
        assert_eq!(total.read_bytes, (2000 + 8) * 512, "dm-0 is counted on sda already");
    }
}
