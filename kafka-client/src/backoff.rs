//! Waits between attempts: the one backoff helper, built on `backon`.
//!
//! Every retry loop of the Kafka layer, the registry and `kfn dev` takes its
//! pauses from here, so the growth (doubling, no jitter unless asked), the
//! ceilings and the deadlines are written once. Loops whose retry is one call
//! use [`within`] with backon's `Retryable`; loops that classify each answer
//! themselves (retry, reset, give up with their own error) hold [`Pauses`].
//! The invoker's retry *policy* (functions.toml's `retry`) is a layer of its
//! own (`invoker::invoke`), not this.
//!
//! ```
//! use std::time::Duration;
//! let ms = |d: Option<Duration>| d.map(|d| d.as_secs_f64() * 1000.0).unwrap_or_default().round();
//! let mut pauses = kfn_kafka::backoff::Pauses::new(Duration::from_millis(20), Duration::from_millis(50));
//! // backon computes in floating point: 40 ms may come out as 39.999999 ms.
//! assert_eq!(ms(pauses.next_delay()), 20.0);
//! assert_eq!(ms(pauses.next_delay()), 40.0);
//! assert_eq!(ms(pauses.next_delay()), 50.0);
//! ```

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::time::Instant;

/// Doubling delays from `min` to `max`, as many as asked for.
pub fn exponential(min: Duration, max: Duration) -> ExponentialBuilder {
    ExponentialBuilder::default().with_min_delay(min).with_max_delay(max).without_max_times()
}

/// Doubling delays from 20 ms to 1 s until `total` has been spent waiting:
/// the backoff of a broker request retried for up to the request timeout.
pub fn within(total: Duration) -> ExponentialBuilder {
    exponential(Duration::from_millis(20), Duration::from_secs(1)).with_total_delay(Some(total))
}

/// The pauses of one retry loop: doubling from `min` to `max`, optionally
/// bounded by a deadline on the wall clock (attempts count, not only sleeps).
#[derive(Debug)]
pub struct Pauses {
    delays: ExponentialBackoff,
    next: Duration,
    deadline: Option<Instant>,
}

impl Pauses {
    /// Pauses without a deadline.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self::from_builder(exponential(min, max), max)
    }

    /// Pauses without a deadline, each a random length between its step
    /// (doubling from `min` to `max`) and twice it: for writers that race each
    /// other and would collide again if they retried in lockstep.
    pub fn jittered(min: Duration, max: Duration) -> Self {
        Self::from_builder(exponential(min, max).with_jitter(), max)
    }

    fn from_builder(builder: ExponentialBuilder, max: Duration) -> Self {
        let mut delays = builder.build();
        let next = delays.next().unwrap_or(max);
        Self { delays, next, deadline: None }
    }

    /// These pauses, ending at `deadline`.
    pub fn until(self, deadline: impl Into<Instant>) -> Self {
        Self { deadline: Some(deadline.into()), ..self }
    }

    /// Whether the deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The next pause, or `None` once the deadline has passed.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if self.expired() {
            return None;
        }
        let delay = self.next;
        self.next = self.delays.next().unwrap_or(delay);
        Some(delay)
    }

    /// Whether the next pause would end past the deadline.
    pub fn would_pass_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() + self.next > d)
    }

    /// Sleeps the next pause; `false` (without sleeping) once the deadline has passed.
    pub async fn pause(&mut self) -> bool {
        match self.next_delay() {
            Some(delay) => {
                tokio::time::sleep(delay).await;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_the_ceiling() {
        let mut p = Pauses::new(Duration::from_millis(10), Duration::from_millis(35));
        let got: Vec<_> = (0..4).map(|_| p.next_delay().expect("no deadline")).collect();
        assert_eq!(got, [10, 20, 35, 35].map(Duration::from_millis));
    }

    #[test]
    fn jittered_pauses_stay_between_the_step_and_twice_it() {
        let mut p = Pauses::jittered(Duration::from_millis(10), Duration::from_millis(40));
        let got: Vec<_> = (0..200).map(|_| p.next_delay().expect("no deadline")).collect();
        for (n, (delay, step)) in got.iter().zip([10, 20, 40].into_iter().chain(std::iter::repeat(40))).enumerate() {
            let step = Duration::from_millis(step);
            assert!(*delay >= step && *delay <= step * 2, "pause {n}: {delay:?} for a step of {step:?}");
        }
        let distinct: std::collections::HashSet<_> = got.iter().collect();
        assert!(distinct.len() > 10, "the pauses are random: {distinct:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_stop_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_millis(25);
        let mut p = Pauses::new(Duration::from_millis(10), Duration::from_millis(10)).until(deadline);
        assert!(!p.would_pass_deadline());
        assert!(p.pause().await);
        assert!(p.pause().await);
        assert!(p.would_pass_deadline(), "20 ms spent, 10 more would pass 25");
        assert!(p.pause().await, "the deadline itself has not passed yet");
        assert!(p.expired());
        assert!(!p.pause().await, "30 ms spent: past the deadline");
    }
}
