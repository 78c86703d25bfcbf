//! The run's results as text for people: printed at the end and written as
//! the Markdown section scripts/chaos puts into docs/chaos.md.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::faults::FaultRecord;
use crate::invariants::{Check, Totals};
use crate::Params;

/// Everything a run produced.
pub struct Report<'a> {
    /// The parameters.
    pub params: &'a Params,
    /// Whether one replica ran in a network namespace.
    pub isolated: bool,
    /// The faults, in order.
    pub faults: Vec<FaultRecord>,
    /// The invariants.
    pub checks: Vec<Check>,
    /// The totals.
    pub totals: Totals,
    /// From the first order to the last answer.
    pub load_took: Duration,
    /// When the last request was sent, since the load started.
    pub last_order_at: Duration,
    /// From the end of the load to every lag at zero; None: not drained.
    pub drained: Option<Duration>,
    /// When the run started.
    pub started: SystemTime,
}

impl Report<'_> {
    /// Whether every invariant and every fault check held, and every fault recovered.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
            && self.faults.iter().all(|f| f.recovery.is_some() && f.check.as_ref().is_none_or(|(ok, _)| *ok))
            && self.drained.is_some()
    }

    /// The Markdown section.
    pub fn markdown(&self) -> String {
        let p = self.params;
        let mut md = String::new();
        let kind = if p.quick { "quick run" } else { "full run" };
        let _ = writeln!(md, "### {} ({kind})\n", utc(self.started));
        let _ = writeln!(md, "- Machine: {}.", machine());
        let _ = writeln!(
            md,
            "- Versions: kfn {} ({} build of `orders`), Apache Kafka 4.4.0 (three KRaft nodes, replication 3, min ISR \
             2){}.",
            env!("CARGO_PKG_VERSION"),
            if cfg!(debug_assertions) { "debug" } else { "release" },
            std::env::var("KFN_CHAOS_RUSTC").map(|v| format!(", {v}")).unwrap_or_default()
        );
        let _ = writeln!(
            md,
            "- Parameters: `--orders {}` `--rate {}`{}; {} kill -9s of a replica, SIGSTOP for {} s, cut-off for {} s{}, \
             registry down {} s, {} orders at the HTTP replica killed mid-request.",
            p.orders,
            p.rate,
            if p.quick { " `--quick`" } else { "" },
            p.plan.kills,
            p.plan.stop_for.as_secs(),
            p.plan.cut_for.as_secs(),
            if self.isolated { "" } else { " (skipped: no namespace)" },
            p.plan.registry_down_for.as_secs(),
            p.plan.burst
        );
        let _ = writeln!(
            md,
            "- Load: {} requests, the last sent at {:.0} s, the last answered at {:.0} s{}; drained (every lag 0) {} \
             after the load ended.",
            self.totals.requested,
            self.last_order_at.as_secs_f64(),
            self.load_took.as_secs_f64(),
            match self.faults.iter().filter(|f| f.at > self.last_order_at.as_secs_f64()).count() {
                0 => String::new(),
                n => format!(" ({n} fault(s) began after the last order was sent: no new orders arrived during them)"),
            },
            self.drained.map_or("not".to_string(), |d| format!("{:.1} s", d.as_secs_f64()))
        );
        let _ = writeln!(
            md,
            "- Recovery = from the fault until every function had committed past everything in its inputs when the \
             fault ended (the read_committed log ends when the process was back, the link up, the node or the registry \
             restarted).\n"
        );
        let _ = writeln!(md, "| # | fault | at (s) | what | recovery (s) | orders sent meanwhile | check |");
        let _ = writeln!(md, "|---|---|---|---|---|---|---|");
        for (i, f) in self.faults.iter().enumerate() {
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {} | {} |",
                i + 1,
                f.name,
                f.at,
                f.detail.replace('|', "/"),
                f.recovery.map_or("not recovered".to_string(), |d| format!("{:.1}", d.as_secs_f64())),
                f.orders_during,
                f.check.as_ref().map_or("-".to_string(), |(ok, why)| format!(
                    "{}: {}",
                    if *ok { "passed" } else { "FAILED" },
                    why.replace('|', "/")
                ))
            );
        }
        let t = &self.totals;
        let _ = writeln!(
            md,
            "\nTotals: **{} accepted**, {} given up by the clients, **{} lost**, **{} duplicated**, {} dead letter(s).\n",
            t.accepted, t.gave_up, t.lost, t.duplicated, t.dead_letters
        );
        let _ = writeln!(md, "| invariant | held | figures |");
        let _ = writeln!(md, "|---|---|---|");
        for c in &self.checks {
            let _ = writeln!(
                md,
                "| {} | {} | {} |",
                c.name,
                if c.ok { "yes" } else { "**no**" },
                c.detail.replace('|', "/")
            );
        }
        let _ = writeln!(
            md,
            "\nVerdict: {}.",
            if self.passed() { "passed" } else { "**failed** (see the rows marked no / FAILED)" }
        );
        md
    }
}

/// Cores, memory and kernel of this machine.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or("? GiB".to_string(), |kb| format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {memory} memory, Linux {}", kernel.trim())
}

/// `YYYY-MM-DD HH:MM UTC`.
fn utc(at: SystemTime) -> String {
    let secs = at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", rest / 3600, rest % 3600 / 60)
}
