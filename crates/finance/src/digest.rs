//! The ledger digest, layout `calyldg1`.
//!
//! One SHA-256 pass over:
//!
//! | field | encoding |
//! |---|---|
//! | tag | the 9 bytes `calyldg1\0` |
//! | version | u64 LE |
//! | tenant count | u64 LE |
//! | active reservations | u64 LE |
//! | per tenant, ascending byte order of id | id length u32 LE, id bytes, initial i64 LE, remaining i64 LE, reserved i64 LE, committed i64 LE |
//! | only when a WAL high watermark is bound | the 33 bytes `calybris.ledger.wal-watermark.v1\0`, watermark u64 LE |
//!
//! Nothing at all is appended when no watermark is bound, so an unbound
//! digest never collides with a bound one by construction of the layout.

use calybris_budget::{BudgetSnapshot, TenantLedger};
use sha2::{Digest as _, Sha256};

/// The 9-byte tag that opens every ledger digest layout.
pub const LEDGER_DIGEST_TAG: &[u8; 9] = b"calyldg1\0";

/// The 33-byte label that precedes a bound WAL high watermark.
pub const WAL_WATERMARK_LABEL: &[u8; 33] = b"calybris.ledger.wal-watermark.v1\0";

/// A SHA-256 ledger digest (`calyldg1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
/// (the engine itself never creates one longer than 256 bytes).
pub fn ledger_digest(
    snapshot: &BudgetSnapshot,
    wal_high_watermark: Option<u64>,
) -> Result<LedgerDigest, LedgerDigestError> {
    let mut rows: Vec<&TenantLedger> = snapshot.tenants.iter().collect();
    rows.sort_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
    let tenant_count = rows.len() as u64;

    let mut hasher = Sha256::new();
    hasher.update(LEDGER_DIGEST_TAG);
    hasher.update(snapshot.version.to_le_bytes());
    hasher.update(tenant_count.to_le_bytes());
    hasher.update(snapshot.active_reservations.to_le_bytes());
    for row in rows {
        let id = row.tenant_id.as_bytes();
        let len_bytes =
            u32::try_from(id.len()).map_err(|_| LedgerDigestError::TenantIdTooLong {
                len_bytes: id.len(),
            })?;
        hasher.update(len_bytes.to_le_bytes());
        hasher.update(id);
        hasher.update(row.initial_microcents.to_le_bytes());
        hasher.update(row.remaining_microcents.to_le_bytes());
        hasher.update(row.reserved_microcents.to_le_bytes());
        hasher.update(row.committed_microcents.to_le_bytes());
    }
    if let Some(watermark) = wal_high_watermark {
        hasher.update(WAL_WATERMARK_LABEL);
        hasher.update(watermark.to_le_bytes());
    }
    Ok(LedgerDigest(hasher.finalize().into()))
}
