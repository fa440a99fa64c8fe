//! What the milter under load costs, read from /proc: CPU ticks and memory
//! of a process tree, and the load tool's own CPU.

/// CPU ticks (utime + stime) of a process and all its descendants.
pub(crate) fn tree_ticks(root: u32) -> u64 {
    tree(root).0
}

/// CPU ticks and process count of a process and its descendants.
pub(crate) fn tree(root: u32) -> (u64, usize) {
    let mut count = 0usize;
    let mut total = 0u64;
    let mut stack = vec![root];
    let all: Vec<(u32, u32, u64)> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
                .filter_map(|pid| {
                    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    // Fields after the command name, which is in parentheses.
                    let rest = stat.rsplit_once(')')?.1;
                    let f: Vec<&str> = rest.split_whitespace().collect();
                    let ppid = f.get(1)?.parse().ok()?;
                    let ut: u64 = f.get(11)?.parse().ok()?;
                    let st: u64 = f.get(12)?.parse().ok()?;
                    Some((pid, ppid, ut + st))
                })
                .collect()
        })
        .unwrap_or_default();
    while let Some(p) = stack.pop() {
        for (pid, ppid, ticks) in &all {
            if *pid == p {
                total += ticks;
                count += 1;
            }
            if *ppid == p {
                stack.push(*pid);
            }
        }
    }
    (total, count)
}

pub(crate) fn ticks_per_second() -> f64 {
    // The kernel's USER_HZ is 100 on every Linux this runs on.
    100.0
}

/// A memory figure (kB) from /proc/PID/status or smaps_rollup, summed over the tree.
pub(crate) fn tree_mem(root: u32, file: &str, key: &str) -> u64 {
    let mut pids = vec![root];
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let mut cur = pid;
            for _ in 0..32 {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{cur}/stat")) else {
                    break;
                };
                let Some(ppid) = stat
                    .rsplit_once(')')
                    .and_then(|(_, r)| r.split_whitespace().nth(1)?.parse::<u32>().ok())
                else {
                    break;
                };
                if ppid == root {
                    pids.push(pid);
                    break;
                }
                if ppid <= 1 {
                    break;
                }
                cur = ppid;
            }
        }
    }
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/{file}")).ok())
        .filter_map(|t| {
            t.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .sum()
}

pub(crate) fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    let t: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    t as f64 / ticks_per_second()
}

/// The whole machine's CPU ticks from /proc/stat: busy (user, nice,
/// system, irq, softirq; guest time is inside user) and steal.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MachineTicks {
    pub(crate) busy: u64,
    pub(crate) steal: u64,
}

impl MachineTicks {
    /// The ticks since `before`.
    pub(crate) fn since(&self, before: &MachineTicks) -> MachineTicks {
        MachineTicks {
            busy: self.busy.saturating_sub(before.busy),
            steal: self.steal.saturating_sub(before.steal),
        }
    }
}

pub(crate) fn machine_ticks() -> MachineTicks {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    parse_machine_ticks(&stat)
}

/// The `cpu` line of /proc/stat: user nice system idle iowait irq softirq
/// steal …
fn parse_machine_ticks(stat: &str) -> MachineTicks {
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return MachineTicks::default();
    };
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    MachineTicks {
        busy: at(0) + at(1) + at(2) + at(5) + at(6),
        steal: at(7),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_line() {
        let t =
            parse_machine_ticks("cpu  100 2 30 5000 7 1 4 9 0 0\ncpu0 50 1 15 2500 3 0 2 4 0 0\n");
        assert_eq!((t.busy, t.steal), (137, 9));
        assert_eq!(parse_machine_ticks("").busy, 0);
    }
}
