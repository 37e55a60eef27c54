//! Health gating of providers: a circuit breaker per provider, periodic probes, and the
//! single heavy inference slot of each local (Ollama) provider.
//!
//! # The breaker
//! ```text
//!            failures >= threshold                cool-down over
//!   Closed ─────────────────────────▶ Open ───────────────────────▶ HalfOpen
//!     ▲                                ▲   (attempt or probe)         │  one trial
//!     │        trial (or probe) ok     │       trial fails            │
//!     └────────────────────────────────┼──────────────────────────────┘
//!                                      └──────────────────────────────┘
//! ```
//! Closed: every attempt goes; consecutive failures (attempts or probes) are counted,
//! a success resets the count, and the threshold opens the breaker. Open: attempts are
//! skipped (`skipped: circuit open` in the execution record) until the cool-down is
//! over. HalfOpen: one trial goes (a request's attempt, or a probe); its success closes
//! the breaker, its failure opens it for another cool-down; other requests skip while
//! the trial is out. A trial whose outcome never comes (its task was cancelled) is
//! given up after another cool-down, so the breaker cannot stay stuck half-open.
//!
//! What counts as a failure: no answer (timeout, connection), a cut or malformed
//! answer, HTTP 5xx and 429. A stream is reported when it ends, not at its first event:
//! a clean end, or a client that went away while it streamed, is a success; a stream the
//! provider cuts after its first event (it disconnects, times out, sends something
//! malformed, or never stops) is a failure, its attempt is marked failed and its
//! execution record's status is `StreamCut`. Other 4xx answers are the request's fault, not the
//! provider's health, and a missing key is a configuration fault: neither counts.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{ProviderConfig, ProviderKind};
use crate::provider::AttemptError;

/// The state of a breaker, as `/metrics` shows it (`calybris_gateway_breaker_state`:
/// 0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Attempts go.
    Closed,
    /// Attempts are skipped until the cool-down is over.
    Open,
    /// One trial goes.
    HalfOpen,
}

impl BreakerState {
    /// The gauge value.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Closed => 0,
            Self::Open => 1,
            Self::HalfOpen => 2,
        }
    }

    /// The label value: `closed`, `open`, `half_open`.
    #[must_use]
    pub const fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum Phase {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { trial_since: Option<Instant> },
}

/// What the breaker says about the next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Go.
    Go,
    /// Go: this attempt is the half-open trial (report its outcome, or
    /// [`Breaker::abandon_trial`] when it does not happen).
    Trial,
    /// Skip the provider.
    Skip,
}

/// A circuit breaker (see the module docs).
#[derive(Debug)]
pub struct Breaker {
    phase: Mutex<Phase>,
    threshold: u32,
    cooldown: Duration,
}

/// A change of state (for the metrics).
pub type Transition = Option<(BreakerState, BreakerState)>;

impl Breaker {
    /// A closed breaker that opens after `threshold` consecutive failures (at least 1)
    /// and stays open for `cooldown`.
    #[must_use]
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        Self {
            phase: Mutex::new(Phase::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
        }
    }

    fn state_of(phase: &Phase) -> BreakerState {
        match phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> BreakerState {
        Self::state_of(&self.phase.lock())
    }

    /// Whether an attempt may go at `now`; moves Open to HalfOpen once the cool-down
    /// is over.
    pub fn admit(&self, now: Instant) -> (Admit, Transition) {
        let mut phase = self.phase.lock();
        match *phase {
            Phase::Closed { .. } => (Admit::Go, None),
            Phase::Open { until } if now < until => (Admit::Skip, None),
            Phase::Open { .. } => {
                *phase = Phase::HalfOpen {
                    trial_since: Some(now),
                };
                (
                    Admit::Trial,
                    Some((BreakerState::Open, BreakerState::HalfOpen)),
                )
            }
            Phase::HalfOpen {
                trial_since: Some(since),
            } if now.saturating_duration_since(since) < self.cooldown => (Admit::Skip, None),
            Phase::HalfOpen { .. } => {
                *phase = Phase::HalfOpen {
                    trial_since: Some(now),
                };
                (Admit::Trial, None)
            }
        }
    }

    /// A trial that was admitted did not happen (the attempt was skipped for another
    /// reason): the next request may take the trial.
    pub fn abandon_trial(&self) {
        let mut phase = self.phase.lock();
        if let Phase::HalfOpen { trial_since } = &mut *phase {
            *trial_since = None;
        }
    }

    /// Records an outcome (of an attempt or a probe) at `now`.
    pub fn record(&self, healthy: bool, now: Instant) -> Transition {
        let mut phase = self.phase.lock();
        let before = Self::state_of(&phase);
        let next = match (&*phase, healthy) {
            (Phase::Closed { .. } | Phase::HalfOpen { .. }, true) => Phase::Closed { failures: 0 },
            (Phase::Closed { failures }, false) => {
                let failures = failures.saturating_add(1);
                if failures >= self.threshold {
                    Phase::Open {
                        until: now + self.cooldown,
                    }
                } else {
                    Phase::Closed { failures }
                }
            }
            (Phase::HalfOpen { .. }, false) => Phase::Open {
                until: now + self.cooldown,
            },
            // Open: an attempt admitted before the breaker opened reports late; a
            // failure extends nothing, a success does not skip the cool-down.
            (Phase::Open { until }, _) => Phase::Open { until: *until },
        };
        *phase = next;
        let after = Self::state_of(&phase);
        debug_assert!(
            !matches!(*phase, Phase::Closed { failures } if failures >= self.threshold),
            "a closed breaker is under its threshold"
        );
        (before != after).then_some((before, after))
    }

    /// What a probe at `now` should do: `true` when its outcome counts (closed, or the
    /// cool-down is over: the probe is then the half-open trial).
    pub fn probe_counts(&self, now: Instant) -> (bool, Transition) {
        let mut phase = self.phase.lock();
        match *phase {
            Phase::Open { until } if now < until => (false, None),
            Phase::Open { .. } => {
                *phase = Phase::HalfOpen {
                    trial_since: Some(now),
                };
                (true, Some((BreakerState::Open, BreakerState::HalfOpen)))
            }
            _ => (true, None),
        }
    }
}

/// Whether an attempt's failure says the provider is unhealthy.
#[must_use]
pub fn counts_as_failure(error: &AttemptError) -> bool {
    match error {
        AttemptError::Status(status) => *status >= 500 || *status == 429,
        AttemptError::Timeout
        | AttemptError::Connect
        | AttemptError::Malformed(_)
        | AttemptError::Truncated => true,
        AttemptError::MissingKey => false,
    }
}

/// The health of one provider: its breaker, its probe settings and, for a local
/// provider, its single inference slot.
#[derive(Debug)]
pub struct ProviderHealth {
    /// The breaker.
    pub breaker: Breaker,
    /// The local inference slot (a semaphore of one), for Ollama providers.
    slot: Option<std::sync::Arc<Semaphore>>,
    /// How often to probe (`None`: never).
    pub probe_interval: Option<Duration>,
    /// How long a probe may take.
    pub probe_timeout: Duration,
    /// The probe URL.
    pub probe_url: String,
}

impl ProviderHealth {
    /// The health state of a configured provider.
    #[must_use]
    pub fn from_config(config: &ProviderConfig) -> Self {
        let base = config.base_url.trim_end_matches('/');
        let probe_url = match config.kind {
            ProviderKind::Openai => format!("{base}/models"),
            ProviderKind::Anthropic => format!("{base}/v1/models"),
            ProviderKind::Ollama => format!("{base}/api/tags"),
        };
        Self {
            breaker: Breaker::new(
                config.breaker_failures,
                Duration::from_millis(config.breaker_cooldown_ms),
            ),
            slot: (config.kind == ProviderKind::Ollama)
                .then(|| std::sync::Arc::new(Semaphore::new(1))),
            probe_interval: (config.probe_interval_ms > 0)
                .then(|| Duration::from_millis(config.probe_interval_ms)),
            probe_timeout: Duration::from_millis(config.probe_timeout_ms.max(1)),
            probe_url,
        }
    }

    /// Whether the provider has a single local slot.
    #[must_use]
    pub fn is_local(&self) -> bool {
        self.slot.is_some()
    }

    /// Waits up to `wait` for the local slot: `Ok(None)` for a provider without one,
    /// `Ok(Some(permit))` holding it, `Err(())` when it stayed busy.
    ///
    /// # Errors
    /// `()` when the slot stayed busy for `wait`.
    pub async fn take_slot(&self, wait: Duration) -> Result<Option<OwnedSemaphorePermit>, ()> {
        let Some(slot) = &self.slot else {
            return Ok(None);
        };
        if let Ok(permit) = slot.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        match tokio::time::timeout(wait, slot.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Some(permit)),
            _ => Err(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_at_threshold_and_recovers_through_half_open() {
        let start = Instant::now();
        let breaker = Breaker::new(2, Duration::from_millis(100));
        assert_eq!(breaker.admit(start).0, Admit::Go);
        assert_eq!(breaker.record(false, start), None);
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert_eq!(
            breaker.record(false, start),
            Some((BreakerState::Closed, BreakerState::Open))
        );
        assert_eq!(
            breaker.admit(start + Duration::from_millis(50)).0,
            Admit::Skip
        );
        let later = start + Duration::from_millis(100);
        assert_eq!(
            breaker.admit(later),
            (
                Admit::Trial,
                Some((BreakerState::Open, BreakerState::HalfOpen))
            )
        );
        // While the trial is out, others skip.
        assert_eq!(breaker.admit(later).0, Admit::Skip);
        // The trial fails: open again for a cool-down.
        assert_eq!(
            breaker.record(false, later),
            Some((BreakerState::HalfOpen, BreakerState::Open))
        );
        assert_eq!(
            breaker.admit(later + Duration::from_millis(99)).0,
            Admit::Skip
        );
        let again = later + Duration::from_millis(100);
        assert_eq!(breaker.admit(again).0, Admit::Trial);
        assert_eq!(
            breaker.record(true, again),
            Some((BreakerState::HalfOpen, BreakerState::Closed))
        );
        assert_eq!(breaker.admit(again).0, Admit::Go);
    }

    #[test]
    fn success_resets_the_count_and_abandoned_trials_free_the_slot() {
        let now = Instant::now();
        let breaker = Breaker::new(2, Duration::from_millis(10));
        breaker.record(false, now);
        breaker.record(true, now);
        breaker.record(false, now);
        assert_eq!(breaker.state(), BreakerState::Closed);
        breaker.record(false, now);
        assert_eq!(breaker.state(), BreakerState::Open);
        let later = now + Duration::from_millis(10);
        assert_eq!(breaker.admit(later).0, Admit::Trial);
        breaker.abandon_trial();
        assert_eq!(breaker.admit(later).0, Admit::Trial);
        // A trial that never reports is given up after a cool-down.
        assert_eq!(
            breaker.admit(later + Duration::from_millis(10)).0,
            Admit::Trial
        );
    }

    #[test]
    fn probes_count_when_closed_or_after_the_cool_down() {
        let now = Instant::now();
        let breaker = Breaker::new(1, Duration::from_millis(10));
        assert_eq!(breaker.probe_counts(now), (true, None));
        breaker.record(false, now);
        assert_eq!(breaker.probe_counts(now), (false, None));
        let later = now + Duration::from_millis(10);
        assert_eq!(
            breaker.probe_counts(later),
            (true, Some((BreakerState::Open, BreakerState::HalfOpen)))
        );
        assert_eq!(
            breaker.record(true, later),
            Some((BreakerState::HalfOpen, BreakerState::Closed))
        );
    }

    #[test]
    fn which_failures_count() {
        assert!(counts_as_failure(&AttemptError::Status(503)));
        assert!(counts_as_failure(&AttemptError::Status(429)));
        assert!(!counts_as_failure(&AttemptError::Status(400)));
        assert!(counts_as_failure(&AttemptError::Timeout));
        assert!(!counts_as_failure(&AttemptError::MissingKey));
    }
}
