//! What a service process costs, read from `/proc/<pid>`: CPU time (user +
//! system), resident memory (current and peak) and its connections to the broker.

use std::time::Duration;

/// CPU time (user + system) the process has used so far; threads included, children not.
pub fn cpu_time(pid: u32) -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: the fields after it start past its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')' come field 3 (state) onwards: utime is field 14, stime field 15.
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let total = ticks(14) + ticks(15);
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks_per_second()))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Peak resident set size in bytes (`VmHWM`).
pub fn peak_rss(pid: u32) -> std::io::Result<u64> {
    status_kib(pid, "VmHWM:").map(|kib| kib * 1024)
}

/// Current resident set size in bytes (`VmRSS`).
pub fn rss(pid: u32) -> std::io::Result<u64> {
    status_kib(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// How many established TCP connections the process holds to any of `ports`
/// (the broker's): its sockets (`/proc/<pid>/fd`) found in the network
/// namespace's tables (`/proc/<pid>/net/tcp`, `tcp6`) by inode.
pub fn connections_to(pid: u32, ports: &[u16]) -> std::io::Result<usize> {
    let mut inodes = std::collections::HashSet::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
        // A descriptor closed meanwhile is simply not counted.
        let Ok(target) = std::fs::read_link(entry?.path()) else { continue };
        let target = target.to_string_lossy();
        if let Some(inode) = target.strip_prefix("socket:[").and_then(|t| t.strip_suffix(']')) {
            inodes.insert(inode.to_string());
        }
    }
    let mut count = 0;
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(state), Some(inode)) = (fields.get(2), fields.get(3), fields.get(9)) else {
                continue;
            };
            let port = remote.rsplit_once(':').and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            // State 01 is ESTABLISHED.
            if *state == "01" && port.is_some_and(|p| ports.contains(&p)) && inodes.contains(*inode) {
                count += 1;
            }
        }
    }
    Ok(count)
}

fn status_kib(pid: u32, field: &str) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no {field} in /proc/{pid}/status")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let pid = std::process::id();
        // Spin until this process has used 20 ms more CPU: a wall-clock spin gets
        // less than that on a loaded machine.
        let before = cpu_time(pid).expect("cpu");
        let limit = std::time::Instant::now() + Duration::from_secs(30);
        let mut x = 0u64;
        while cpu_time(pid).expect("cpu") < before + Duration::from_millis(20) {
            assert!(std::time::Instant::now() < limit, "cpu time never grew");
            for _ in 0..100_000 {
                x = x.wrapping_add(std::hint::black_box(1));
            }
        }
        assert!(x > 0);
        // The kernel updates VmHWM lazily, so it may trail VmRSS for a moment: check each alone.
        assert!(rss(pid).expect("rss") > 0);
        assert!(peak_rss(pid).expect("peak") > 0);
    }

    #[test]
    fn connections_to_a_port_are_counted_while_open() {
        let pid = std::process::id();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        assert_eq!(connections_to(pid, &[port]).expect("count"), 0);
        let a = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let b = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        // The accepted ends' remote ports are the clients', so only a and b count.
        let _accepted = (listener.accept().expect("accept"), listener.accept().expect("accept"));
        assert_eq!(connections_to(pid, &[port]).expect("count"), 2);
        drop((a, b));
    }
}
