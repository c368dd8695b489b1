//! Processes from `/proc/[pid]/stat`: count, and per-process CPU time and resident memory
//! for the "top processes" lists.

use super::Root;

/// One process at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSample {
    pub pid: u32,
    pub name: String,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
    pub state: char,
}

/// Parses one `stat` line. The command name is in parentheses and may itself contain
/// spaces and parentheses, so fields are counted from the last `)`.
pub fn parse_pid_stat(text: &str) -> Option<ProcessSample> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text[..open].trim().parse().ok()?;
    let name = text.get(open + 1..close)?.to_owned();
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime 15, rss 24.
    let field = |n: usize| rest.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    Some(ProcessSample {
        pid,
        name,
        cpu_ticks: field(14)? + field(15)?,
        rss_pages: field(24)?,
        state: rest.first()?.chars().next()?,
    })
}

/// Every process readable right now. Processes that exit mid-scan are skipped. One
/// buffer serves every file (no size probe, no allocation per process), and each
/// `<pid>/stat` is opened relative to the `/proc` directory already open (no walk
/// from `/` per process).
pub fn read_processes(root: &Root) -> Vec<ProcessSample> {
    use rustix::fs::{Dir, Mode, OFlags, openat};
    let Ok(proc_dir) =
        openat(rustix::fs::CWD, root.path("proc"), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
    else {
        return Vec::new();
    };
    let Ok(mut entries) = Dir::read_from(&proc_dir) else { return Vec::new() };
    let mut buffer = vec![0u8; 4096];
    let mut path = Vec::with_capacity(32);
    let mut found = Vec::new();
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes();
        if name.is_empty() || !name.iter().all(u8::is_ascii_digit) {
            continue;
        }
        path.clear();
        path.extend_from_slice(name);
        path.extend_from_slice(b"/stat");
        let Ok(file) = openat(&proc_dir, path.as_slice(), OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()) else {
            continue;
        };
        if let Ok(text) = super::read_line_fd(&file, &mut buffer)
            && let Some(sample) = parse_pid_stat(text)
        {
            found.push(sample);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_spaces_and_parentheses() {
        let line = "4242 (tmux: server (1)) S 1 4242 4242 0 -1 4194560 1013 0 0 0 150 50 0 0 20 0 1 0 1234 12345678 2048 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
        let p = parse_pid_stat(line).unwrap();
        assert_eq!(p.pid, 4242);
        assert_eq!(p.name, "tmux: server (1)");
        assert_eq!(p.cpu_ticks, 200);
        assert_eq!(p.rss_pages, 2048);
        assert_eq!(p.state, 'S');
        assert!(parse_pid_stat("12 (short) S 1 2").is_none());
    }
}
