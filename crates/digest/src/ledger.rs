//! The budget ledger layout (`calyldg1`) and the tenant-number layout (`calytnt1`).
//!
//! The ledger digest is one SHA-256 pass over:
//!
//! | field | encoding |
//! |---|---|
//! | tag | the 9 bytes `calyldg1\0` ([`LEDGER_DIGEST_TAG`]) |
//! | version | u64 LE |
//! | tenant count | u64 LE |
//! | active reservations | u64 LE |
//! | per tenant, ascending byte order of id | id length u32 LE, id bytes, initial i64 LE, remaining i64 LE, reserved i64 LE, committed i64 LE |
//! | only when a log high watermark is bound | the 33 bytes [`WAL_WATERMARK_LABEL`], watermark u64 LE |
//!
//! Nothing is appended when no watermark is bound, so an unbound digest and a bound one
//! never share a preimage. The budget engine's types live in `calybris-budget`, which this
//! `no_std` crate does not depend on: callers hand the rows over as [`LedgerRow`]s.

use crate::canon::{Canon, Digest, LEDGER_DIGEST_TAG, TENANT_NUMBER_TAG};

/// The 33-byte label that precedes a bound log high watermark in the ledger layout.
pub const WAL_WATERMARK_LABEL: &[u8; 33] = b"calybris.ledger.wal-watermark.v1\0";

/// One tenant's balances as the ledger layout reads them (amounts in the books' unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerRow<'a> {
    /// The tenant's id, as UTF-8 bytes.
    pub tenant_id: &'a [u8],
    /// Every amount ever granted (opening budget plus top-ups).
    pub initial: i64,
    /// Spendable now.
    pub remaining: i64,
    /// Held by open reservations.
    pub reserved: i64,
    /// Spent over the tenant's lifetime.
    pub committed: i64,
}

/// Why a ledger has no digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerLayoutError {
    /// A tenant id is longer than the u32 length field can state.
    TenantIdTooLong {
        /// The id's length in bytes.
        len_bytes: usize,
    },
    /// The rows are not in strictly ascending byte order of their ids.
    RowsNotSorted,
}

impl core::fmt::Display for LedgerLayoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TenantIdTooLong { len_bytes } => write!(
                f,
                "a tenant id of {len_bytes} bytes does not fit the u32 length field"
            ),
            Self::RowsNotSorted => {
                write!(f, "ledger rows must be in strictly ascending order of id")
            }
        }
    }
}

impl core::error::Error for LedgerLayoutError {}

/// The `calyldg1` digest of a ledger whose rows are given in strictly ascending byte
/// order of their ids (sort them first; a repeated or out-of-order id is refused, so two
/// callers can never digest the same books differently).
///
/// # Errors
/// [`LedgerLayoutError::RowsNotSorted`] or [`LedgerLayoutError::TenantIdTooLong`].
pub fn ledger_digest_of<'a>(
    version: u64,
    active_reservations: u64,
    rows: &[LedgerRow<'a>],
    wal_high_watermark: Option<u64>,
) -> Result<Digest, LedgerLayoutError> {
    if rows
        .windows(2)
        .any(|pair| pair[0].tenant_id >= pair[1].tenant_id)
    {
        return Err(LedgerLayoutError::RowsNotSorted);
    }
    let mut canon = Canon::sha256(LEDGER_DIGEST_TAG);
    canon
        .u64(version)
        .u64(rows.len() as u64)
        .u64(active_reservations);
    for row in rows {
        let len_bytes =
            u32::try_from(row.tenant_id.len()).map_err(|_| LedgerLayoutError::TenantIdTooLong {
                len_bytes: row.tenant_id.len(),
            })?;
        canon
            .u32(len_bytes)
            .bytes(row.tenant_id)
            .i64(row.initial)
            .i64(row.remaining)
            .i64(row.reserved)
            .i64(row.committed);
    }
    if let Some(watermark) = wal_high_watermark {
        canon.bytes(WAL_WATERMARK_LABEL).u64(watermark);
    }
    Ok(canon.finish())
}

/// The `u64` a tenant name is known by in fixed-width fields (for instance a decision
/// record's `tenant_id`): the first eight bytes, big-endian, of SHA-256 over
/// [`TENANT_NUMBER_TAG`] and the name's UTF-8 bytes. Stable across runs and machines, so
/// anyone holding the tenant list can map numbers back to names.
#[must_use]
pub fn tenant_number(tenant_id: &str) -> u64 {
    let mut canon = Canon::sha256(TENANT_NUMBER_TAG);
    canon.bytes(tenant_id.as_bytes());
    let digest = canon.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> LedgerRow<'_> {
        LedgerRow {
            tenant_id: id.as_bytes(),
            initial: 10,
            remaining: 4,
            reserved: 3,
            committed: 3,
        }
    }

    #[test]
    fn unsorted_or_repeated_rows_are_refused() {
        assert_eq!(
            ledger_digest_of(1, 0, &[row("b"), row("a")], None),
            Err(LedgerLayoutError::RowsNotSorted)
        );
        assert_eq!(
            ledger_digest_of(1, 0, &[row("a"), row("a")], None),
            Err(LedgerLayoutError::RowsNotSorted)
        );
        assert!(ledger_digest_of(1, 0, &[row("a"), row("b")], None).is_ok());
    }

    #[test]
    fn the_watermark_changes_the_digest() {
        let rows = [row("a")];
        let unbound = ledger_digest_of(1, 0, &rows, None);
        let bound = ledger_digest_of(1, 0, &rows, Some(0));
        assert_ne!(unbound, bound);
    }

    #[test]
    fn tenant_numbers_differ_by_name() {
        assert_ne!(tenant_number("acme"), tenant_number("acme "));
        assert_eq!(tenant_number("acme"), tenant_number("acme"));
    }
}
