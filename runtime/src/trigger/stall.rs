//! When did a request arrive, if this process was not running then?
//!
//! An Idempotency-Key's deadline counts from the request's arrival
//! (docs/http.md, step 5), and the process sees a request only once it runs.
//! A replica stopped for a while (SIGSTOP, a frozen VM, a CPU starved for
//! seconds) finds, when it runs again, requests the kernel took in long
//! before, whose clients may be giving up and retrying on another replica
//! at that very moment. Taken as arriving *now*, such a request gets a fresh
//! deadline and can create its order a second time: the chaos runner's
//! zombie replica did, a request sent 5 s into its 15-s stop, handled 25 ms
//! after SIGCONT while its client's retry was on its way to the other replica
//! (docs/chaos.md). So the trigger notices its own stalls: a task ticks every
//! [`TICK`]; a gap longer than [`STALL`] between two ticks is a stall, and a
//! request first seen during one, or within [`SLACK`] after it ended, is
//! taken to have arrived when the stall began. That is conservative: such a
//! request more often gets a 503 than a late write, and its client retries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

/// How often the process checks that it runs.
pub const TICK: Duration = Duration::from_millis(100);
/// A gap between two ticks longer than this is a stall.
pub const STALL: Duration = Duration::from_secs(1);
/// How long after a stall ended a request may still have arrived during it
/// (the tasks that ran first after it, before the ticker noticed).
pub const SLACK: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct State {
    last_tick: Instant,
    /// The last stall: when it began (the tick before) and when it was noticed.
    last_stall: Option<(Instant, Instant)>,
}

/// The process's own stalls, as its ticker saw them; cheap to clone.
#[derive(Debug, Clone)]
pub struct Stalls {
    state: Arc<Mutex<State>>,
}

impl Default for Stalls {
    fn default() -> Self {
        Stalls { state: Arc::new(Mutex::new(State { last_tick: Instant::now(), last_stall: None })) }
    }
}

impl Stalls {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ticks until `shutdown` turns true, recording each stall.
    pub async fn watch(self, mut shutdown: watch::Receiver<bool>) {
        self.state().last_tick = Instant::now();
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // `tick` gives the instant the tick was due; the gap is measured to now.
                _ = ticks.tick() => self.tick(Instant::now()),
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    fn tick(&self, now: Instant) {
        let mut state = self.state();
        let gap = now.duration_since(state.last_tick);
        if gap > STALL {
            tracing::warn!(
                seconds = gap.as_secs_f64(),
                "this process did not run for a while: keyed requests it finds now count from before"
            );
            state.last_stall = Some((state.last_tick, now));
        }
        state.last_tick = now;
    }

    /// The earliest a request first seen at `seen` may have arrived: `seen`,
    /// unless the process was stalled then or just before.
    pub fn arrival(&self, seen: Instant) -> Instant {
        let state = self.state();
        if seen.duration_since(state.last_tick) > STALL {
            // Stalled still, as far as the ticker knows: it has not run since.
            return state.last_tick;
        }
        match state.last_stall {
            Some((began, noticed)) if seen <= noticed + SLACK => began.min(seen),
            _ => seen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_first_seen_after_a_stall_arrived_when_it_began() {
        let stalls = Stalls::default();
        let (_stop, shutdown) = watch::channel(false);
        tokio::spawn(stalls.clone().watch(shutdown));
        tokio::time::sleep(Duration::from_secs(2)).await;
        let now = Instant::now();
        assert_eq!(stalls.arrival(now), now, "no stall: a request arrives when it is seen");

        // The whole process stops for 15 s (time moves, no task runs)...
        let before = Instant::now();
        tokio::time::advance(Duration::from_secs(15)).await;
        // ...and a request is seen, whether or not the ticker ran since.
        let seen = Instant::now();
        let arrived = stalls.arrival(seen);
        assert!(arrived <= before && before.duration_since(arrived) <= TICK, "{:?}", seen.duration_since(arrived));

        // Once the ticker noticed, a request seen within the slack still counts from the stall.
        tokio::time::sleep(TICK * 2).await;
        assert!(stalls.arrival(Instant::now()) <= before, "within the slack");
        // Well after it, requests arrive when seen again.
        tokio::time::sleep(SLACK * 2).await;
        let seen = Instant::now();
        assert_eq!(stalls.arrival(seen), seen);
    }
}
