//! Conservation proofs and financial certificates.

use crate::digest::{LedgerDigest, LedgerDigestError, ledger_digest};
use calybris_budget::{BudgetEngine, BudgetSnapshot, TenantLedger};
use parking_lot::Mutex;

/// A sum of `i64` balances, reported exactly or flagged as not fitting `i64`.
///
/// Totals are computed in `i128`, which cannot overflow for any number of
/// `i64` rows a snapshot can hold, so a total is never wrapped or clamped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Total {
    /// The sum fits in an `i64`.
    Exact(i64),
    /// The sum does not fit in an `i64`; its exact value is kept here.
    DoesNotFit {
        /// The exact sum.
        exact_microcents: i128,
    },
}

impl Total {
    /// Classifies an exact sum.
    pub fn from_exact(exact_microcents: i128) -> Self {
        match i64::try_from(exact_microcents) {
            Ok(value) => Self::Exact(value),
            Err(_) => Self::DoesNotFit { exact_microcents },
        }
    }

    /// The sum if it fits in an `i64`.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            Self::Exact(value) => Some(value),
            Self::DoesNotFit { .. } => None,
        }
    }

    /// The exact sum, whether or not it fits in an `i64`.
    pub fn exact_microcents(self) -> i128 {
        match self {
            Self::Exact(value) => i128::from(value),
            Self::DoesNotFit { exact_microcents } => exact_microcents,
        }
    }
}

/// The four balances summed over every tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Totals {
    /// Sum of `initial_microcents`.
    pub initial: Total,
    /// Sum of `remaining_microcents`.
    pub remaining: Total,
    /// Sum of `reserved_microcents`.
    pub reserved: Total,
    /// Sum of `committed_microcents`.
    pub committed: Total,
}

impl Totals {
    /// Sums the rows exactly.
    pub fn of(rows: &[TenantLedger]) -> Self {
        let sum = |field: fn(&TenantLedger) -> i64| -> Total {
            Total::from_exact(rows.iter().map(|row| i128::from(field(row))).sum())
        };
        Self {
            initial: sum(|row| row.initial_microcents),
            remaining: sum(|row| row.remaining_microcents),
            reserved: sum(|row| row.reserved_microcents),
            committed: sum(|row| row.committed_microcents),
        }
    }

    /// Whether every total fits in an `i64`.
    pub fn all_fit(&self) -> bool {
        [self.initial, self.remaining, self.reserved, self.committed]
            .iter()
            .all(|total| total.as_i64().is_some())
    }
}

/// One tenant's row in a proof, with its conservation delta.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct TenantBalance {
    /// The tenant's books at the snapshot.
    pub ledger: TenantLedger,
    /// `remaining + reserved + committed - initial`, exact; zero when balanced.
    pub delta_microcents: i128,
}

impl TenantBalance {
    /// Whether this tenant's books balance.
    pub fn is_balanced(&self) -> bool {
        self.delta_microcents == 0
    }
}

/// Evidence that a frozen ledger balances (or exactly how it does not).
///
/// Everything in it refers to one snapshot: the per-tenant rows, their
/// totals, and the ledger digest that binds them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ConservationProof {
    /// The `calyldg1` digest of the snapshot (bound to the watermark if any).
    pub ledger_digest: LedgerDigest,
    /// The snapshot's version.
    pub snapshot_version: u64,
    /// The WAL high watermark bound into the digest, if any.
    pub wal_high_watermark: Option<u64>,
    /// Reservations open at the snapshot.
    pub active_reservations: u64,
    /// One entry per tenant, in ascending byte order of id.
    pub tenants: Vec<TenantBalance>,
    /// Sums over all tenants, each exact or flagged as not fitting `i64`.
    pub totals: Totals,
    /// Whether every tenant balances.
    pub balanced: bool,
}

impl ConservationProof {
    /// The tenants whose books do not balance.
    pub fn violations(&self) -> impl Iterator<Item = &TenantBalance> {
        self.tenants.iter().filter(|tenant| !tenant.is_balanced())
    }
}

/// Proves conservation over a frozen snapshot.
///
/// A snapshot that does not balance still yields a proof, with
/// `balanced == false` and the offending rows' deltas.
///
/// # Errors
///
/// [`LedgerDigestError`] if the snapshot cannot be digested.
pub fn prove_snapshot(
    snapshot: &BudgetSnapshot,
    wal_high_watermark: Option<u64>,
) -> Result<ConservationProof, LedgerDigestError> {
    let ledger_digest = ledger_digest(snapshot, wal_high_watermark)?;
    let mut rows = snapshot.tenants.clone();
    rows.sort_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
    let totals = Totals::of(&rows);
    let tenants: Vec<TenantBalance> = rows
        .into_iter()
        .map(|ledger| TenantBalance {
            delta_microcents: ledger.conservation_delta_microcents(),
            ledger,
        })
        .collect();
    let balanced = tenants.iter().all(TenantBalance::is_balanced);
    Ok(ConservationProof {
        ledger_digest,
        snapshot_version: snapshot.version,
        wal_high_watermark,
        active_reservations: snapshot.active_reservations,
        tenants,
        totals,
        balanced,
    })
}

/// Takes one snapshot of `engine` and proves conservation over it.
///
/// # Errors
///
/// [`LedgerDigestError`] if the snapshot cannot be digested (the engine
/// never produces such a snapshot).
pub fn prove_conservation(
    engine: &BudgetEngine,
    wal_high_watermark: Option<u64>,
) -> Result<ConservationProof, LedgerDigestError> {
    prove_snapshot(&engine.snapshot(), wal_high_watermark)
}

/// A conservation proof plus the spend since the previous certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct FinancialCertificate {
    /// 1 for the first certificate of a [`Certifier`], then +1 each time.
    pub sequence: u64,
    /// The proof this certificate attests (always balanced).
    pub proof: ConservationProof,
    /// Total lifetime spend recorded by the previous certificate (0 for the first).
    pub baseline_committed: Total,
    /// Total lifetime spend now minus the baseline; never negative.
    pub committed_since_previous: Total,
}

/// Why a [`Certifier`] refused to issue a certificate.
///
/// A refusal leaves the certifier's baseline where it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateError {
    /// The snapshot cannot be digested.
    #[error(transparent)]
    Digest(#[from] LedgerDigestError),
    /// The books do not balance; the proof shows where.
    #[error("the ledger does not balance")]
    Unbalanced {
        /// The failing proof.
        proof: Box<ConservationProof>,
    },
    /// The snapshot is not newer than the one last certified.
    #[error("snapshot version {version} is not newer than the certified {previous_version}")]
    StaleSnapshot {
        /// The refused snapshot's version.
        version: u64,
        /// The version last certified.
        previous_version: u64,
    },
    /// Total lifetime spend is below the previous certificate's: spend never
    /// decreases, so this ledger is not a successor of the certified one.
    #[error("total spend {committed_microcents} is below the baseline {baseline_microcents}")]
    SpendWentBackwards {
        /// Total lifetime spend in the refused snapshot.
        committed_microcents: i128,
        /// The baseline.
        baseline_microcents: i128,
    },
    /// The certificate sequence is exhausted.
    #[error("certificate sequence exhausted")]
    SequenceExhausted,
}

/// Where a certifier stands: what the last certificate recorded.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct CertificateBaseline {
    /// Sequence of the last certificate issued (0 before the first).
    pub sequence: u64,
    /// Snapshot version of the last certificate (`None` before the first).
    pub snapshot_version: Option<u64>,
    /// Total lifetime spend at the last certificate, exact.
    pub committed_microcents: i128,
}

impl CertificateBaseline {
    /// The baseline that follows `certificate`, to resume a certifier after a restart.
    pub fn after(certificate: &FinancialCertificate) -> Self {
        Self {
            sequence: certificate.sequence,
            snapshot_version: Some(certificate.proof.snapshot_version),
            committed_microcents: certificate.proof.totals.committed.exact_microcents(),
        }
    }
}

/// Issues certificates whose baseline only moves forward.
///
/// Each certificate reports the lifetime spend since the previous one. The
/// baseline advances only when a certificate is issued, and a snapshot that
/// is not newer, or whose total spend is lower, is refused, so the reported
/// spends of successive certificates add up to the spend between the first
/// and the last.
#[derive(Debug, Default)]
pub struct Certifier {
    baseline: Mutex<CertificateBaseline>,
}

impl Certifier {
    /// A certifier that has issued nothing (baseline: zero spend).
    pub fn new() -> Self {
        Self::default()
    }

    /// A certifier that continues from `baseline` (see [`CertificateBaseline::after`]).
    pub fn resume(baseline: CertificateBaseline) -> Self {
        Self {
            baseline: Mutex::new(baseline),
        }
    }

    /// Where the certifier stands now.
    pub fn baseline(&self) -> CertificateBaseline {
        *self.baseline.lock()
    }

    /// Takes a snapshot of `engine` and certifies it.
    ///
    /// # Errors
    ///
    /// As [`certify`](Self::certify).
    pub fn certify_engine(
        &self,
        engine: &BudgetEngine,
        wal_high_watermark: Option<u64>,
    ) -> Result<FinancialCertificate, CertificateError> {
        self.certify(&engine.snapshot(), wal_high_watermark)
    }

    /// Certifies `snapshot` and advances the baseline to it.
    ///
    /// # Errors
    ///
    /// [`CertificateError::Unbalanced`], [`CertificateError::StaleSnapshot`],
    /// [`CertificateError::SpendWentBackwards`],
    /// [`CertificateError::Digest`] or
    /// [`CertificateError::SequenceExhausted`]; the baseline is unchanged.
    pub fn certify(
        &self,
        snapshot: &BudgetSnapshot,
        wal_high_watermark: Option<u64>,
    ) -> Result<FinancialCertificate, CertificateError> {
        let proof = prove_snapshot(snapshot, wal_high_watermark)?;
        if !proof.balanced {
            return Err(CertificateError::Unbalanced {
                proof: Box::new(proof),
            });
        }
        let mut baseline = self.baseline.lock();
        if let Some(previous_version) = baseline.snapshot_version
            && snapshot.version <= previous_version
        {
            return Err(CertificateError::StaleSnapshot {
                version: snapshot.version,
                previous_version,
            });
        }
        let committed_microcents = proof.totals.committed.exact_microcents();
        if committed_microcents < baseline.committed_microcents {
            return Err(CertificateError::SpendWentBackwards {
                committed_microcents,
                baseline_microcents: baseline.committed_microcents,
            });
        }
        let sequence = baseline
            .sequence
            .checked_add(1)
            .ok_or(CertificateError::SequenceExhausted)?;
        let certificate = FinancialCertificate {
            sequence,
            baseline_committed: Total::from_exact(baseline.committed_microcents),
            committed_since_previous: Total::from_exact(
                committed_microcents - baseline.committed_microcents,
            ),
            proof,
        };
        *baseline = CertificateBaseline::after(&certificate);
        Ok(certificate)
    }
}
