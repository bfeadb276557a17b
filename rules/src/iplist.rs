//! An IP list file (a deny list, a threat-intel feed): one address or CIDR network per line,
//! `#` starts a comment, anything after the first space or comma on a line is ignored (so
//! `203.0.113.7,botnet C2` reads). Lookups are a binary search over merged ranges, so a
//! feed of a million networks costs the same per event as ten.
//!
//! The file is re-read when its modification time or size changes, checked at most once a
//! second while events are evaluated; a bad line at start is a config error naming the
//! line, a bad line in a later version keeps the previous list (logged) until it is fixed.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::SystemTime;

use crate::sigma::detection::Cidr;

/// How often, at most, the file's modification time is looked at.
const CHECK_EVERY_MS: i64 = 1000;

/// A reloading IP list.
pub struct IpList {
    path: PathBuf,
    state: RwLock<State>,
    next_check_ms: AtomicI64,
}

#[derive(Default)]
struct State {
    stamp: Option<(SystemTime, u64)>,
    /// Sorted, merged, inclusive ranges in the IPv6 space (IPv4 as `::ffff:a.b.c.d`).
    ranges: Vec<(u128, u128)>,
}

impl std::fmt::Debug for IpList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpList")
            .field("path", &self.path)
            .field("ranges", &self.len())
            .finish()
    }
}

impl PartialEq for IpList {
    fn eq(&self, other: &IpList) -> bool {
        self.path == other.path
    }
}

impl IpList {
    /// Reads the list; the error names the file and the line.
    pub fn load(path: &Path) -> Result<IpList, String> {
        let (stamp, ranges) = read(path)?;
        Ok(IpList {
            path: path.to_path_buf(),
            state: RwLock::new(State {
                stamp: Some(stamp),
                ranges,
            }),
            next_check_ms: AtomicI64::new(now_ms() + CHECK_EVERY_MS),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Merged ranges in the list now.
    pub fn len(&self) -> usize {
        self.state.read().map_or(0, |s| s.ranges.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `text` is an IP address in the list (re-reading the file if it changed).
    pub fn contains(&self, text: &str) -> bool {
        self.refresh();
        let Ok(ip) = text.trim().parse::<IpAddr>() else {
            return false;
        };
        let n = to_u128(ip);
        let Ok(state) = self.state.read() else {
            return false;
        };
        let i = state.ranges.partition_point(|(lo, _)| *lo <= n);
        i > 0 && state.ranges[i - 1].1 >= n
    }

    /// Re-reads the file when it changed since the last look (at most once a second).
    fn refresh(&self) {
        let now = now_ms();
        let due = self.next_check_ms.load(Ordering::Relaxed);
        if now < due
            || self
                .next_check_ms
                .compare_exchange(
                    due,
                    now + CHECK_EVERY_MS,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        self.reload_if_changed();
    }

    /// Re-reads the file if its modification time or size changed.
    fn reload_if_changed(&self) {
        let current = stamp_of(&self.path).ok();
        let known = self.state.read().ok().and_then(|s| s.stamp);
        if current.is_none() || current == known {
            if current.is_none() {
                tracing::warn!(path = %self.path.display(), "IP list unreadable; keeping the previous list");
            }
            return;
        }
        match read(&self.path) {
            Ok((stamp, ranges)) => {
                tracing::info!(path = %self.path.display(), ranges = ranges.len(), "IP list reloaded");
                if let Ok(mut s) = self.state.write() {
                    *s = State {
                        stamp: Some(stamp),
                        ranges,
                    };
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "IP list changed but does not read; keeping the previous list");
                if let (Ok(mut s), Some(stamp)) = (self.state.write(), current) {
                    // Do not re-read this version every second; the next change is looked at.
                    s.stamp = Some(stamp);
                }
            }
        }
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn stamp_of(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().to_bits(),
        IpAddr::V6(v6) => v6.to_bits(),
    }
}

type Ranges = Vec<(u128, u128)>;

fn read(path: &Path) -> Result<((SystemTime, u64), Ranges), String> {
    let stamp =
        stamp_of(path).map_err(|e| format!("`{}`: cannot read it ({e})", path.display()))?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("`{}`: cannot read it ({e})", path.display()))?;
    let mut ranges = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default();
        let Some(entry) = line.split([' ', '\t', ',', ';']).find(|t| !t.is_empty()) else {
            continue;
        };
        let cidr =
            Cidr::parse(entry).map_err(|e| format!("`{}` line {}: {e}", path.display(), i + 1))?;
        ranges.push(cidr.range());
    }
    ranges.sort_unstable();
    let mut merged: Ranges = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    Ok((stamp, merged))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_and_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deny.txt");
        std::fs::write(
            &p,
            "# feed\n203.0.113.0/24\n198.51.100.7,botnet\n\n2001:db8::/32 # v6\n203.0.113.128/25\n",
        )
        .unwrap();
        let list = IpList::load(&p).unwrap();
        assert_eq!(list.len(), 3, "the /25 merges into the /24");
        for ip in [
            "203.0.113.1",
            "203.0.113.255",
            "198.51.100.7",
            "2001:db8::9",
            "::ffff:198.51.100.7",
        ] {
            assert!(list.contains(ip), "{ip}");
        }
        for ip in ["203.0.114.0", "198.51.100.8", "2001:db9::1", "nope", ""] {
            assert!(!list.contains(ip), "{ip}");
        }
        // A new version is read; a broken one after it keeps the last good list.
        std::fs::write(&p, "10.0.0.0/8\n").unwrap();
        list.reload_if_changed();
        assert!(list.contains("10.1.2.3") && !list.contains("203.0.113.1"));
        std::fs::write(&p, "10.0.0.0/8\nbad-entry\n").unwrap();
        list.reload_if_changed();
        assert!(list.contains("10.1.2.3") && list.len() == 1);
        let err = IpList::load(&p).unwrap_err();
        assert!(
            err.contains("deny.txt` line 2: `bad-entry` is not an IP network"),
            "{err}"
        );
    }
}
