//! Thompson selection over Beta posteriors, its exact re-derivable propensity, and a
//! keyed epsilon-greedy baseline.
//!
//! One decision draws one `Beta(α, β)` sample per arm, arms in index order, from the
//! [`Purpose::Thompson`] stream with index 0 of the decision's [`Prf`], and picks the
//! highest sample (ties go to the lowest arm index). Its propensity is re-derived by
//! `K` more draws, streams 1..=K: with `c` the number of those in which the same arm
//! wins, the propensity is the exact fraction `(c + 1) / (K + 1)`. The `+ 1` counts
//! the decision's own draw (stream 0), which by construction picked the arm, so the
//! fraction is the arm's share over all `K + 1` draws and is never 0.

use crate::beta::{SHAPE_MAX, Sampler, check_shape};
use crate::error::LearnError;
use crate::prf::{Prf, Purpose, StateStreams, Stream};

/// The most arms a policy accepts: bounds a decision's draws.
pub const ARMS_MAX: usize = 1024;

/// The most re-draws a propensity may ask for: bounds its time (re-draws × arms).
pub const REDRAWS_MAX: u32 = 1_000_000;

/// Basis points in one (probability 1).
pub const BPS_ONE: u32 = 10_000;

/// The most samples a [`ThompsonTable`] holds (regimes × rows × arms): 64 MiB of
/// `f64` (100,000 rows of the 80 Open Bandit Dataset items fit).
pub const TABLE_SAMPLES_MAX: usize = 1 << 23;

/// An arm's column is redrawn once its count `n = α + β` reaches
/// `n_ref + max(1, ⌊n_ref / REFRESH_GROWTH_DIVISOR⌋)`, `n_ref` the count it was drawn
/// at: every outcome while `n_ref < 128`, then every 1/64 growth. (1/16 was tried:
/// cheaper, but the simulation's Thompson regret at 100,000 requests rose by half.)
pub const REFRESH_GROWTH_DIVISOR: u32 = 64;

/// Every `REFRESH_PERIOD` applied updates of a regime, the next arm of the regime in
/// round robin (arm `(u / REFRESH_PERIOD) mod arms` at update count `u`) is redrawn
/// too, played or not: no column is older than `REFRESH_PERIOD × arms` updates of
/// its regime.
pub const REFRESH_PERIOD: u32 = 32;

/// A Beta posterior of one arm with integer shapes in [1, [`SHAPE_MAX`]].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Posterior {
    alpha: u32,
    beta: u32,
}

impl Posterior {
    /// The uniform prior Beta(1, 1).
    pub const UNIFORM: Self = Self { alpha: 1, beta: 1 };

    /// A posterior `Beta(alpha, beta)`.
    ///
    /// # Errors
    /// [`LearnError::ShapeOutOfRange`].
    pub const fn new(alpha: u32, beta: u32) -> Result<Self, LearnError> {
        if let Err(e) = check_shape(alpha) {
            return Err(e);
        }
        if let Err(e) = check_shape(beta) {
            return Err(e);
        }
        Ok(Self { alpha, beta })
    }

    /// α (prior successes plus observed successes).
    #[must_use]
    pub const fn alpha(&self) -> u32 {
        self.alpha
    }

    /// β (prior failures plus observed failures).
    #[must_use]
    pub const fn beta(&self) -> u32 {
        self.beta
    }

    /// The posterior after one outcome: a success adds 1 to α, a failure 1 to β.
    ///
    /// # Errors
    /// [`LearnError::ShapeOutOfRange`] when the shape would pass [`SHAPE_MAX`]
    /// (the state is unchanged; the caller decides how to forget).
    pub const fn observed(self, success: bool) -> Result<Self, LearnError> {
        let (alpha, beta) = if success {
            (self.alpha + 1, self.beta)
        } else {
            (self.alpha, self.beta + 1)
        };
        if alpha > SHAPE_MAX || beta > SHAPE_MAX {
            return Err(LearnError::ShapeOutOfRange {
                shape: SHAPE_MAX as u64 + 1,
            });
        }
        Ok(Self { alpha, beta })
    }
}

/// An exact probability `numerator / denominator` (not reduced: a verifier recomputes
/// both integers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Propensity {
    /// The numerator, at most the denominator.
    pub numerator: u64,
    /// The denominator, at least 1.
    pub denominator: u64,
}

impl Propensity {
    /// Probability one.
    pub const ONE: Self = Self {
        numerator: 1,
        denominator: 1,
    };

    /// The nearest binary64 (one correctly rounded division of exact conversions
    /// when both are below 2^53).
    #[must_use]
    pub fn to_f64(self) -> f64 {
        debug_assert!(self.denominator > 0 && self.numerator <= self.denominator);
        self.numerator as f64 / self.denominator as f64
    }
}

/// Which learning policy picks an arm when the engine explores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    /// Thompson sampling, propensity over `redraws` keyed re-draws.
    Thompson {
        /// `K` of `(c + 1) / (K + 1)`.
        redraws: u32,
    },
    /// The baseline: explore with `epsilon_bps`, else the arm of highest posterior mean.
    EpsilonGreedy {
        /// The exploration probability, in basis points.
        epsilon_bps: u32,
    },
}

fn check_arms(posteriors: &[Posterior]) -> Result<(), LearnError> {
    if posteriors.is_empty() || posteriors.len() > ARMS_MAX {
        return Err(LearnError::ArmCount {
            arms: posteriors.len(),
            max: ARMS_MAX,
        });
    }
    Ok(())
}

fn arm_index(i: usize) -> u32 {
    // i < ARMS_MAX, checked by every caller.
    u32::try_from(i).unwrap_or_else(|_| unreachable!("arm index below ARMS_MAX"))
}

/// The winner of Thompson draw `replica` (0: the decision; 1..=K: re-draws): the arm
/// with the highest sample, the lowest index on ties.
///
/// # Errors
/// [`LearnError::ArmCount`]; [`LearnError::Exhausted`] (practically never).
pub fn thompson_draw(prf: &Prf, replica: u64, posteriors: &[Posterior]) -> Result<u32, LearnError> {
    check_arms(posteriors)?;
    let mut sampler = Sampler::new(prf.stream(Purpose::Thompson, replica));
    let mut best = 0usize;
    let mut best_sample = f64::NEG_INFINITY;
    for (i, p) in posteriors.iter().enumerate() {
        let sample = sampler.beta(p.alpha, p.beta)?;
        // Strictly greater: an equal later sample does not displace the lower index.
        if sample > best_sample {
            best = i;
            best_sample = sample;
        }
    }
    Ok(arm_index(best))
}

/// How many of the re-draws 1..=`redraws` each arm wins (index = arm).
///
/// # Errors
/// [`LearnError::ArmCount`], [`LearnError::Redraws`], [`LearnError::Exhausted`].
pub fn thompson_wins(
    prf: &Prf,
    posteriors: &[Posterior],
    redraws: u32,
) -> Result<Vec<u64>, LearnError> {
    check_arms(posteriors)?;
    check_redraws(redraws)?;
    let mut wins = vec![0u64; posteriors.len()];
    for replica in 1..=u64::from(redraws) {
        let arm = thompson_draw(prf, replica, posteriors)?;
        wins[arm as usize] += 1;
    }
    debug_assert_eq!(wins.iter().sum::<u64>(), u64::from(redraws));
    Ok(wins)
}

const fn check_redraws(redraws: u32) -> Result<(), LearnError> {
    if redraws == 0 || redraws > REDRAWS_MAX {
        return Err(LearnError::Redraws {
            redraws,
            max: REDRAWS_MAX,
        });
    }
    Ok(())
}

/// The propensity of `arm` under Thompson: `(c + 1) / (K + 1)`, `c` the re-draws
/// 1..=K that `arm` wins.
///
/// # Errors
/// [`LearnError::ArmOutOfRange`] and those of [`thompson_wins`].
pub fn thompson_propensity(
    prf: &Prf,
    posteriors: &[Posterior],
    arm: u32,
    redraws: u32,
) -> Result<Propensity, LearnError> {
    check_arms(posteriors)?;
    check_arm(arm, posteriors.len())?;
    let wins = thompson_wins(prf, posteriors, redraws)?;
    let p = Propensity {
        numerator: wins[arm as usize] + 1,
        denominator: u64::from(redraws) + 1,
    };
    debug_assert!(p.numerator >= 1 && p.numerator <= p.denominator);
    Ok(p)
}

fn check_arm(arm: u32, arms: usize) -> Result<(), LearnError> {
    if arm as usize >= arms {
        return Err(LearnError::ArmOutOfRange {
            arm,
            arms: arm_index(arms),
        });
    }
    Ok(())
}

/// When and from which posterior one column of a [`ThompsonTable`] was drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Refresh {
    /// The regime's count of applied updates when the column was drawn (0: at the
    /// engine's start); it names the column's stream.
    pub refreshed_at: u32,
    /// The posterior the column was drawn from.
    pub posterior: Posterior,
}

/// The engine's Thompson table (`docs/ADAPT.md` section 3): per regime, `rows` rows of
/// one keyed `Beta` draw per arm; a row's winner is its highest sample (the lowest
/// index on ties). A decision picks a uniformly random row and plays its winner, so
/// the arm's probability is exactly the share of rows it wins, which the table knows.
///
/// The column of arm `a` in regime `r` (its `rows` samples, rows in order, one
/// [`Sampler`] over [`StateStreams::column`]`(r, a, refreshed_at)`) is a function of
/// the state alone, redrawn lazily: when the arm's count has grown by
/// `1/`[`REFRESH_GROWTH_DIVISOR`] since it was drawn, and in round robin every
/// [`REFRESH_PERIOD`] updates of the regime.
#[derive(Debug, Clone)]
pub struct ThompsonTable {
    regimes: usize,
    arms: usize,
    rows: usize,
    /// `samples[(r · rows + j) · arms + a]`.
    samples: Vec<f64>,
    /// `winners[r · rows + j]`.
    winners: Vec<u32>,
    /// `wins[r · arms + a]`: the rows of `r` that `a` wins.
    wins: Vec<u64>,
    /// `refreshes[r · arms + a]`.
    refreshes: Vec<Refresh>,
    /// Applied updates per regime.
    updates: Vec<u32>,
}

/// The columns an update redraws, computed before anything changes
/// ([`ThompsonTable::prepare`], then [`ThompsonTable::commit`]).
#[derive(Debug, Clone)]
pub struct TableUpdate {
    regime: usize,
    updates: u32,
    /// (arm, refresh, its samples by row).
    columns: Vec<(usize, Refresh, Vec<f64>)>,
}

impl TableUpdate {
    /// How many columns the update redraws (0, 1 or 2).
    #[must_use]
    pub fn redrawn(&self) -> usize {
        self.columns.len()
    }
}

/// The `rows` samples of one column.
fn draw_column(
    streams: &StateStreams,
    regime: usize,
    arm: usize,
    refresh: Refresh,
    rows: usize,
) -> Result<Vec<f64>, LearnError> {
    // regime < 64 and arm < 1,024: both fit a u16.
    let stream: Stream = streams.column(
        u16::try_from(regime).unwrap_or(u16::MAX),
        u16::try_from(arm).unwrap_or(u16::MAX),
        refresh.refreshed_at,
    );
    let mut sampler = Sampler::new(stream);
    let p = refresh.posterior;
    (0..rows).map(|_| sampler.beta(p.alpha, p.beta)).collect()
}

impl ThompsonTable {
    /// The table of a fresh engine: every column drawn at update count 0 from
    /// `posteriors` (regime-major, `regimes × arms`).
    ///
    /// # Errors
    /// [`LearnError::ArmCount`]; [`LearnError::Redraws`] for 0 rows or more than
    /// [`TABLE_SAMPLES_MAX`] samples; [`LearnError::Exhausted`].
    pub fn new(
        streams: &StateStreams,
        regimes: usize,
        posteriors: &[Posterior],
        rows: usize,
    ) -> Result<Self, LearnError> {
        // A fresh table is a restored one whose every column was drawn at count 0.
        let refreshes = posteriors
            .iter()
            .map(|&posterior| Refresh {
                refreshed_at: 0,
                posterior,
            })
            .collect();
        Self::from_refreshes(streams, regimes, refreshes, vec![0; regimes], rows)
    }

    /// The table of a restored state: each column drawn again from its
    /// [`Refresh`] (its stream and posterior), then every row scored. `refreshes` is
    /// regime-major (`regimes × arms`), `updates` one count per regime; a refresh
    /// after its regime's count is refused. The samples are a function of the
    /// refreshes and the key, so the table equals the one the engine had.
    ///
    /// # Errors
    /// [`LearnError::ArmCount`], [`LearnError::Redraws`] as [`new`](Self::new);
    /// [`LearnError::InvalidState`]; [`LearnError::Exhausted`].
    pub fn from_refreshes(
        streams: &StateStreams,
        regimes: usize,
        refreshes: Vec<Refresh>,
        updates: Vec<u32>,
        rows: usize,
    ) -> Result<Self, LearnError> {
        if updates.len() != regimes {
            return Err(LearnError::InvalidState {
                reason: "the table's update counts are not one per regime",
            });
        }
        let posteriors: Vec<Posterior> = refreshes.iter().map(|r| r.posterior).collect();
        // Checks the shape of the table and its size; draws the columns at count 0,
        // which the refreshes then replace.
        let arms = posteriors.len() / regimes.max(1);
        if regimes == 0 || arms == 0 || arms > ARMS_MAX || arms * regimes != posteriors.len() {
            return Err(LearnError::ArmCount {
                arms,
                max: ARMS_MAX,
            });
        }
        let samples = regimes * arms * rows;
        if rows == 0 || samples > TABLE_SAMPLES_MAX {
            return Err(LearnError::Redraws {
                redraws: u32::try_from(rows).unwrap_or(u32::MAX),
                max: u32::try_from(TABLE_SAMPLES_MAX / (regimes * arms)).unwrap_or(u32::MAX),
            });
        }
        for (r, regime) in refreshes.chunks_exact(arms).enumerate() {
            if regime.iter().any(|f| f.refreshed_at > updates[r]) {
                return Err(LearnError::InvalidState {
                    reason: "a table column refreshed after its regime's update count",
                });
            }
        }
        let mut table = Self {
            regimes,
            arms,
            rows,
            samples: vec![0.0; samples],
            winners: vec![0; regimes * rows],
            wins: vec![0; regimes * arms],
            refreshes,
            updates,
        };
        for r in 0..regimes {
            for a in 0..arms {
                let column = draw_column(streams, r, a, table.refreshes[r * arms + a], rows)?;
                table.write_column(r, a, &column);
            }
            table.rescore(r);
        }
        Ok(table)
    }

    /// Rows per regime.
    #[must_use]
    pub const fn rows(&self) -> usize {
        self.rows
    }

    /// The winner of `row` in `regime` (both in range: checked by the engine).
    #[must_use]
    pub fn winner(&self, regime: u32, row: u64) -> u32 {
        debug_assert!((regime as usize) < self.regimes && row < self.rows as u64);
        self.winners[regime as usize * self.rows + row as usize]
    }

    /// The rows of `regime` that `arm` wins.
    #[must_use]
    pub fn wins(&self, regime: u32, arm: u32) -> u64 {
        debug_assert!((regime as usize) < self.regimes && (arm as usize) < self.arms);
        self.wins[regime as usize * self.arms + arm as usize]
    }

    /// When and from which posterior each column of `regime` was drawn, by arm.
    #[must_use]
    pub fn refreshes(&self, regime: u32) -> &[Refresh] {
        let r = regime as usize;
        &self.refreshes[r * self.arms..(r + 1) * self.arms]
    }

    /// The applied updates of `regime`.
    #[must_use]
    pub fn updates(&self, regime: u32) -> u32 {
        self.updates[regime as usize]
    }

    /// The sample of `arm` in `row` of `regime`.
    #[must_use]
    pub fn sample(&self, regime: u32, row: usize, arm: u32) -> f64 {
        self.samples[(regime as usize * self.rows + row) * self.arms + arm as usize]
    }

    fn write_column(&mut self, regime: usize, arm: usize, column: &[f64]) {
        debug_assert_eq!(column.len(), self.rows);
        for (j, &x) in column.iter().enumerate() {
            self.samples[(regime * self.rows + j) * self.arms + arm] = x;
        }
    }

    /// Recomputes the winners of `regime`'s rows and the arms' win counts.
    fn rescore(&mut self, regime: usize) {
        let arms = self.arms;
        self.wins[regime * arms..(regime + 1) * arms].fill(0);
        for j in 0..self.rows {
            let row = &self.samples[(regime * self.rows + j) * arms..][..arms];
            let mut best = 0usize;
            for (a, &x) in row.iter().enumerate().skip(1) {
                // Strictly greater: an equal later sample does not displace the lower
                // index.
                if x > row[best] {
                    best = a;
                }
            }
            self.winners[regime * self.rows + j] = arm_index(best);
            self.wins[regime * arms + best] += 1;
        }
        debug_assert_eq!(
            self.wins[regime * arms..(regime + 1) * arms]
                .iter()
                .sum::<u64>(),
            self.rows as u64
        );
    }

    /// The columns the update of `arm` in `regime` redraws: `posteriors` are the
    /// regime's before the update, `updated` the arm's after it. Draws them; changes
    /// nothing.
    ///
    /// # Errors
    /// [`LearnError::Overflow`] past `u32::MAX` updates of a regime;
    /// [`LearnError::Exhausted`].
    pub fn prepare(
        &self,
        streams: &StateStreams,
        regime: u32,
        arm: u32,
        updated: Posterior,
        posteriors: &[Posterior],
    ) -> Result<TableUpdate, LearnError> {
        let r = regime as usize;
        debug_assert!(r < self.regimes && posteriors.len() == self.arms);
        let updates = self.updates[r].checked_add(1).ok_or(LearnError::Overflow {
            what: "regime updates",
        })?;
        let mut due = Vec::with_capacity(2);
        let then = self.refreshes[r * self.arms + arm as usize].posterior;
        let n_ref = then.alpha + then.beta;
        let now = updated;
        if now.alpha + now.beta >= n_ref + (n_ref / REFRESH_GROWTH_DIVISOR).max(1) {
            due.push(arm as usize);
        }
        if updates.is_multiple_of(REFRESH_PERIOD) {
            let next = (updates / REFRESH_PERIOD) as usize % self.arms;
            if !due.contains(&next) {
                due.push(next);
            }
        }
        let mut columns = Vec::with_capacity(due.len());
        for a in due {
            let refresh = Refresh {
                refreshed_at: updates,
                posterior: if a == arm as usize {
                    updated
                } else {
                    posteriors[a]
                },
            };
            columns.push((a, refresh, draw_column(streams, r, a, refresh, self.rows)?));
        }
        Ok(TableUpdate {
            regime: r,
            updates,
            columns,
        })
    }

    /// Applies a prepared update. Each redrawn column moves the winners incrementally:
    /// in a row the column's arm did not win, it wins now if its new sample is higher
    /// than the winner's (or equal, from a lower index); a row it won is scanned again.
    pub fn commit(&mut self, update: TableUpdate) {
        let r = update.regime;
        debug_assert_eq!(update.updates, self.updates[r] + 1);
        self.updates[r] = update.updates;
        let arms = self.arms;
        for (a, refresh, column) in update.columns {
            self.write_column(r, a, &column);
            self.refreshes[r * arms + a] = refresh;
            for (j, &x) in column.iter().enumerate() {
                let row = &self.samples[(r * self.rows + j) * arms..][..arms];
                let winner = self.winners[r * self.rows + j] as usize;
                let best = if winner == a {
                    let mut best = 0usize;
                    for (b, &y) in row.iter().enumerate().skip(1) {
                        if y > row[best] {
                            best = b;
                        }
                    }
                    best
                } else if x > row[winner] || (x == row[winner] && a < winner) {
                    a
                } else {
                    winner
                };
                if best != winner {
                    self.winners[r * self.rows + j] = arm_index(best);
                    self.wins[r * arms + winner] -= 1;
                    self.wins[r * arms + best] += 1;
                }
            }
        }
        debug_assert!(self.scored(r), "incremental winners equal a full rescore");
    }

    /// Whether the winners and win counts of `regime` are a full rescore's.
    fn scored(&self, regime: usize) -> bool {
        let mut copy = self.clone();
        copy.rescore(regime);
        copy.winners == self.winners && copy.wins == self.wins
    }
}

/// The arm of highest posterior mean `α / (α + β)`, compared exactly by
/// cross-multiplication in `u64`; the lowest index on ties.
///
/// # Errors
/// [`LearnError::ArmCount`].
pub fn greedy_arm(posteriors: &[Posterior]) -> Result<u32, LearnError> {
    check_arms(posteriors)?;
    let mut best = 0usize;
    for (i, p) in posteriors.iter().enumerate().skip(1) {
        let b = posteriors[best];
        // a/(a+b) > a'/(a'+b')  ⇔  a·(a'+b') > a'·(a+b); each product is below 2^42.
        let lhs = u64::from(p.alpha) * (u64::from(b.alpha) + u64::from(b.beta));
        let rhs = u64::from(b.alpha) * (u64::from(p.alpha) + u64::from(p.beta));
        if lhs > rhs {
            best = i;
        }
    }
    Ok(arm_index(best))
}

/// Keyed epsilon-greedy: on the [`Purpose::EpsilonGreedy`] stream 0, a uniform integer
/// `r` in [0, 10,000); if `r < epsilon_bps` a uniform arm (the next uniform integer in
/// [0, n)), else the [`greedy_arm`]. Returns the arm and its exact propensity
/// `(e·1 + (10,000 − e)·n·[arm = greedy]) / (10,000·n)`.
///
/// # Errors
/// [`LearnError::ArmCount`], [`LearnError::BasisPoints`], [`LearnError::Exhausted`].
pub fn epsilon_greedy_select(
    prf: &Prf,
    posteriors: &[Posterior],
    epsilon_bps: u32,
) -> Result<(u32, Propensity), LearnError> {
    epsilon_greedy_on(
        &mut prf.stream(Purpose::EpsilonGreedy, 0),
        posteriors,
        epsilon_bps,
    )
}

/// [`epsilon_greedy_select`] on the next words of `stream` (the engine's decision
/// stream): the coin `below(10,000)`, then `below(n)` if it explores.
///
/// # Errors
/// [`LearnError::ArmCount`], [`LearnError::BasisPoints`], [`LearnError::Exhausted`].
pub fn epsilon_greedy_on(
    stream: &mut Stream,
    posteriors: &[Posterior],
    epsilon_bps: u32,
) -> Result<(u32, Propensity), LearnError> {
    check_arms(posteriors)?;
    if epsilon_bps > BPS_ONE {
        return Err(LearnError::BasisPoints {
            what: "epsilon",
            bps: epsilon_bps,
        });
    }
    let greedy = greedy_arm(posteriors)?;
    let n = posteriors.len() as u64;
    let coin = stream.below(u64::from(BPS_ONE))?;
    let arm = if coin < u64::from(epsilon_bps) {
        arm_index(usize::try_from(stream.below(n)?).unwrap_or(0))
    } else {
        greedy
    };
    Ok((
        arm,
        epsilon_greedy_propensity(posteriors, epsilon_bps, arm)?,
    ))
}

/// The exact epsilon-greedy propensity of `arm` (see [`epsilon_greedy_select`]).
///
/// # Errors
/// [`LearnError::ArmCount`], [`LearnError::ArmOutOfRange`], [`LearnError::BasisPoints`].
pub fn epsilon_greedy_propensity(
    posteriors: &[Posterior],
    epsilon_bps: u32,
    arm: u32,
) -> Result<Propensity, LearnError> {
    check_arms(posteriors)?;
    check_arm(arm, posteriors.len())?;
    if epsilon_bps > BPS_ONE {
        return Err(LearnError::BasisPoints {
            what: "epsilon",
            bps: epsilon_bps,
        });
    }
    let n = posteriors.len() as u64;
    let e = u64::from(epsilon_bps);
    let exploit = if arm == greedy_arm(posteriors)? {
        (u64::from(BPS_ONE) - e) * n
    } else {
        0
    };
    Ok(Propensity {
        numerator: e + exploit,
        denominator: u64::from(BPS_ONE) * n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prf::PrfKey;

    fn prf(i: u8) -> Prf {
        Prf::new(&PrfKey::from_bytes([i; 32]), &[0; 32], &[i; 32])
    }

    #[test]
    fn ties_go_to_the_lowest_index_and_a_sure_arm_wins() {
        // Beta(10^6, 1) against Beta(1, 10^6): the first arm always wins.
        let arms = [
            Posterior::new(1, 1_000_000).unwrap(),
            Posterior::new(1_000_000, 1).unwrap(),
            Posterior::new(1_000_000, 1).unwrap(),
        ];
        let mut seen = [0u32; 3];
        for i in 0..50 {
            seen[thompson_draw(&prf(i), 0, &arms).unwrap() as usize] += 1;
        }
        assert_eq!(seen[0], 0);
        assert!(seen[1] > 0 && seen[2] > 0);
        // Greedy: equal means tie to the lowest index.
        assert_eq!(greedy_arm(&arms).unwrap(), 1);
        assert_eq!(greedy_arm(&[Posterior::UNIFORM; 4]).unwrap(), 0);
    }

    #[test]
    fn propensity_counts_the_decision_draw() {
        let arms = [Posterior::new(3, 5).unwrap(), Posterior::new(5, 3).unwrap()];
        let p = prf(1);
        let chosen = thompson_draw(&p, 0, &arms).unwrap();
        let wins = thompson_wins(&p, &arms, 200).unwrap();
        let prop = thompson_propensity(&p, &arms, chosen, 200).unwrap();
        assert_eq!(prop.numerator, wins[chosen as usize] + 1);
        assert_eq!(prop.denominator, 201);
        let other = thompson_propensity(&p, &arms, 1 - chosen, 200).unwrap();
        assert_eq!(prop.numerator + other.numerator, 202);
        assert!(thompson_propensity(&p, &arms, 2, 10).is_err());
        assert!(thompson_propensity(&p, &arms, 0, 0).is_err());
        assert!(thompson_draw(&p, 0, &[]).is_err());
    }

    #[test]
    fn the_table_is_a_function_of_its_refreshes() {
        let streams = StateStreams::new(&PrfKey::from_bytes([3; 32]));
        let arms = 5;
        let mut posteriors: Vec<Posterior> = (0..2 * arms)
            .map(|i| Posterior::new(1 + i, 2).unwrap())
            .collect();
        let mut table = ThompsonTable::new(&streams, 2, &posteriors, 7).unwrap();
        let mut redrawn = 0;
        for step in 0u32..300 {
            let (r, a) = (step % 2, (step * 7 / 3) % arms);
            let i = (r * arms + a) as usize;
            let regime = &posteriors[(r * arms) as usize..((r + 1) * arms) as usize];
            let updated = posteriors[i].observed(step % 3 == 0).unwrap();
            let update = table.prepare(&streams, r, a, updated, regime).unwrap();
            redrawn += update.redrawn();
            table.commit(update);
            posteriors[i] = updated;
        }
        assert_eq!(table.updates(0), 150);
        // Small counts: every update redraws its arm's column, plus one column in round
        // robin every 32 updates of a regime (4 per regime here) when it is another.
        assert!((300..=308).contains(&redrawn), "{redrawn}");
        for r in 0..2u32 {
            let mut wins = [0u64; 5];
            for j in 0..7 {
                // Every column is the keyed draw its refresh names.
                let mut best = 0;
                for a in 0..arms {
                    let refresh = table.refreshes(r)[a as usize];
                    let column = draw_column(&streams, r as usize, a as usize, refresh, 7).unwrap();
                    assert_eq!(table.sample(r, j, a).to_bits(), column[j].to_bits());
                    if table.sample(r, j, a) > table.sample(r, j, best) {
                        best = a;
                    }
                }
                assert_eq!(table.winner(r, j as u64), best);
                wins[best as usize] += 1;
            }
            for a in 0..arms {
                assert_eq!(table.wins(r, a), wins[a as usize]);
                // No column is older than REFRESH_PERIOD × arms updates of its regime.
                let age = table.updates(r) - table.refreshes(r)[a as usize].refreshed_at;
                assert!(age <= REFRESH_PERIOD * arms, "{age}");
            }
        }
        assert!(ThompsonTable::new(&streams, 2, &posteriors, 0).is_err());
        // A large count: arm 0 at 10,000 is redrawn once it grows by 10,000 / 64 = 156,
        // and arms 1, 2, ..., 6 of 8 in round robin at updates 32, 64, ..., 192.
        let mut posteriors = vec![Posterior::new(5_000, 5_000).unwrap(); 8];
        let mut table = ThompsonTable::new(&streams, 1, &posteriors, 3).unwrap();
        let mut redraws = Vec::new();
        for u in 1..=200u32 {
            let updated = posteriors[0].observed(u % 2 == 0).unwrap();
            let update = table.prepare(&streams, 0, 0, updated, &posteriors).unwrap();
            if update.redrawn() > 0 {
                redraws.push(u);
            }
            table.commit(update);
            posteriors[0] = updated;
        }
        assert_eq!(redraws, [32, 64, 96, 128, 156, 160, 192]);
        assert_eq!(table.refreshes(0)[0].refreshed_at, 156);
        assert_eq!(table.refreshes(0)[5].refreshed_at, 160);
        assert_eq!(table.refreshes(0)[7].refreshed_at, 0);
        assert_eq!(
            table.refreshes(0)[0].posterior.alpha() + table.refreshes(0)[0].posterior.beta(),
            10_156
        );
        assert!(ThompsonTable::new(&streams, 2, &posteriors, TABLE_SAMPLES_MAX).is_err());
    }

    #[test]
    fn epsilon_greedy_propensities_sum_to_one() {
        let arms = [
            Posterior::new(2, 8).unwrap(),
            Posterior::new(8, 2).unwrap(),
            Posterior::new(5, 5).unwrap(),
        ];
        for eps in [0, 1, 500, 10_000] {
            let total: u64 = (0..3)
                .map(|a| epsilon_greedy_propensity(&arms, eps, a).unwrap().numerator)
                .sum();
            assert_eq!(total, 30_000);
        }
        // With epsilon 0 the greedy arm is always chosen, with propensity 1.
        for i in 0..20 {
            let (arm, p) = epsilon_greedy_select(&prf(i), &arms, 0).unwrap();
            assert_eq!(arm, 1);
            assert_eq!(p.to_f64(), 1.0);
        }
        assert!(epsilon_greedy_select(&prf(0), &arms, 10_001).is_err());
    }
}
