//! Which filesystems are real: `/proc/self/mounts` minus pseudo and duplicate mounts.

use super::{CollectError, Root, read};

/// One mounted filesystem worth reporting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fstype: String,
}

/// Kernel and virtual filesystems: no disk behind them, or one already counted.
const PSEUDO: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "nfsd",
    "iso9660",
];

/// Filesystems whose "device" is not a path but that hold real data.
const DEVICELESS_REAL: &[&str] =
    &["zfs", "nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "glusterfs", "ceph", "9p", "virtiofs"];

/// `\040` and friends: mount paths escape spaces, tabs, newlines and backslashes in octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Some(code) =
                std::str::from_utf8(&bytes[i + 1..i + 4]).ok().and_then(|o| u8::from_str_radix(o, 8).ok())
        {
            out.push(code);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Real filesystems in mount order, each device once (bind mounts and btrfs subvolumes
/// mounted twice report the first mount point).
pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut seen = std::collections::HashSet::new();
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [device, mount_point, fstype, ..] = fields[..] else { continue };
        if PSEUDO.contains(&fstype) {
            continue;
        }
        let real = device.starts_with('/') || DEVICELESS_REAL.contains(&fstype);
        if !real || device.starts_with("/dev/loop") {
            continue;
        }
        if !seen.insert(device.to_owned()) {
            continue;
        }
        mounts.push(Mount { device: unescape(device), mount_point: unescape(mount_point), fstype: fstype.to_owned() });
    }
    mounts
}

pub fn read_mounts(root: &Root) -> Result<Vec<Mount>, CollectError> {
    let text = read(root, "proc/self/mounts").or_else(|_| read(root, "proc/mounts"))?;
    Ok(parse_mounts(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_real_filesystems_once() {
        let text = "\
sysfs /sys sysfs rw,nosuid 0 0
proc /proc proc rw 0 0
udev /dev devtmpfs rw 0 0
/dev/sda1 / ext4 rw,relatime 0 0
tmpfs /run tmpfs rw 0 0
/dev/sda2 /boot ext4 rw 0 0
/dev/sda1 /var/lib/docker/bind ext4 rw 0 0
/dev/loop0 /snap/core/1 squashfs ro 0 0
/dev/loop1 /mnt/image ext4 ro 0 0
tank/home /home zfs rw 0 0
overlay /var/lib/docker/overlay2/x/merged overlay rw 0 0
/dev/sdb1 /mnt/my\\040disk xfs rw 0 0
";
        let mounts = parse_mounts(text);
        let points: Vec<&str> = mounts.iter().map(|m| m.mount_point.as_str()).collect();
        assert_eq!(points, ["/", "/boot", "/home", "/mnt/my disk"]);
        assert_eq!(mounts[2].fstype, "zfs");
    }
}
