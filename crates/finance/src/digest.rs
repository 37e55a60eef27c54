//! The ledger digest, layout `calyldg1`, of a [`BudgetSnapshot`].
//!
//! The layout itself (every field, byte by byte) is defined once, in
//! `calybris-digest` ([`calybris_digest::ledger_digest_of`]); this module only hands the
//! snapshot's rows to it in the order the layout requires.

use calybris_budget::{BudgetSnapshot, TenantLedger};
use calybris_digest::{LedgerLayoutError, LedgerRow, ledger_digest_of};

/// The 9-byte tag that opens every ledger digest layout (defined in `calybris-digest`).
pub use calybris_digest::LEDGER_DIGEST_TAG;

/// The 33-byte label that precedes a bound WAL high watermark (defined in `calybris-digest`).
pub use calybris_digest::WAL_WATERMARK_LABEL;

/// A SHA-256 ledger digest (`calyldg1`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct LedgerDigest(pub [u8; 32]);

impl LedgerDigest {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl std::fmt::Display for LedgerDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// Why a snapshot has no ledger digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerDigestError {
    /// A tenant id is longer than the layout's u32 length field can state.
    #[error("a tenant id of {len_bytes} bytes does not fit the u32 length field")]
    TenantIdTooLong {
        /// The id's length.
        len_bytes: usize,
    },
    /// Two rows of the snapshot name the same tenant.
    #[error("the snapshot names a tenant twice")]
    RepeatedTenant,
}

/// The `calyldg1` digest of `snapshot`, bound to `wal_high_watermark` if given.
///
/// Tenants are hashed in ascending byte order of their ids whatever their
/// order in `snapshot.tenants`, so two snapshots holding the same rows digest
/// alike. (Snapshots from [`calybris_budget::BudgetEngine::snapshot`] are
/// already in that order and never repeat an id.)
///
/// # Errors
///
/// [`LedgerDigestError::TenantIdTooLong`] if an id exceeds `u32::MAX` bytes
/// (the engine itself never creates one longer than 256 bytes), and
/// [`LedgerDigestError::RepeatedTenant`] if two rows share an id.
pub fn ledger_digest(
    snapshot: &BudgetSnapshot,
    wal_high_watermark: Option<u64>,
) -> Result<LedgerDigest, LedgerDigestError> {
    let mut rows: Vec<&TenantLedger> = snapshot.tenants.iter().collect();
    rows.sort_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
    let rows: Vec<LedgerRow<'_>> = rows
        .into_iter()
        .map(|row| LedgerRow {
            tenant_id: row.tenant_id.as_bytes(),
            initial: row.initial_microcents,
            remaining: row.remaining_microcents,
            reserved: row.reserved_microcents,
            committed: row.committed_microcents,
        })
        .collect();
    ledger_digest_of(
        snapshot.version,
        snapshot.active_reservations,
        &rows,
        wal_high_watermark,
    )
    .map(|digest| LedgerDigest(digest.to_bytes()))
    .map_err(|error| match error {
        LedgerLayoutError::TenantIdTooLong { len_bytes } => {
            LedgerDigestError::TenantIdTooLong { len_bytes }
        }
        LedgerLayoutError::RowsNotSorted => LedgerDigestError::RepeatedTenant,
    })
}
