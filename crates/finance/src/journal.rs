//! The durable ledger: every budget operation journaled through `calybris-wal`.
//!
//! # Order
//!
//! Each operation is applied to the in-memory engine and appended to the log
//! under one short lock, so the log order is an order in which the engine
//! actually applied the operations; the caller then waits for its record to be
//! durable *outside* the lock, so concurrent callers share one fdatasync
//! (group commit). An operation is acknowledged (its method returns `Ok`) only
//! once its record is durable. A durable prefix of the log is therefore always
//! a sequence the engine went through, and replaying it gives exactly that
//! state.
//!
//! # Recovery rule for open reservations
//!
//! Reservations open at a crash lost their handles with the process. On
//! [`DurableLedger::open`] they are **released**: their holds go back to the
//! tenants, nothing is counted as spent, and a `Released` record is journaled
//! for each, so the log keeps describing the engine. The digest of the state
//! *before* that release (the last durable state) is reported in
//! [`LedgerRecovery::digest_at_recovery`].

use crate::digest::{LedgerDigest, LedgerDigestError, ledger_digest};
use crate::proof::{ConservationProof, prove_snapshot};
use calybris_budget::{
    BudgetEngine, BudgetError, BudgetSnapshot, ConservationViolation, Reservation, Settlement,
    TenantCreation, TenantLedger, TenantLimits,
};
use calybris_wal::{DurableConfig, DurableWal, SegmentedReader, WalError, WalKey};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// One journaled budget operation.
///
/// Journal reservation ids are assigned by the ledger in log order, starting
/// at 0 and counting every `Reserved` record ever written to the log.
///
/// # Encoding
///
/// Each record is one `calybris-wal` frame whose payload is the postcard
/// encoding of this enum: the variant index as a varint (`TenantCreated` 0,
/// `ToppedUp` 1, `Reserved` 2, `Committed` 3, `Released` 4), then the fields
/// in declaration order (strings as a varint byte length and UTF-8 bytes,
/// `i64` as a zigzag varint, `u64` as a varint). New variants are only ever
/// appended. The bytes of one record of each kind are pinned in
/// `tests/data/journal_records.txt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum JournalRecord {
    /// A tenant was created.
    TenantCreated {
        /// The tenant.
        tenant_id: String,
        /// Its opening budget.
        initial_microcents: i64,
    },
    /// A tenant was topped up.
    ToppedUp {
        /// The tenant.
        tenant_id: String,
        /// The amount added.
        amount_microcents: i64,
    },
    /// A reservation was opened.
    Reserved {
        /// The journal's id for it.
        reservation: u64,
        /// The tenant.
        tenant_id: String,
        /// The amount held.
        amount_microcents: i64,
    },
    /// A reservation was committed (the overrun path included).
    Committed {
        /// The journal's id of the reservation.
        reservation: u64,
        /// The actual cost.
        actual_microcents: i64,
    },
    /// A reservation was released.
    Released {
        /// The journal's id of the reservation.
        reservation: u64,
    },
}

/// Why a durable-ledger operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The engine refused the operation; nothing was journaled.
    #[error(transparent)]
    Budget(#[from] BudgetError),
    /// The log failed. If the operation had been applied in memory, the
    /// ledger is now poisoned: reopen it to recover the durable state.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// An earlier log failure poisoned this ledger; reopen it.
    #[error("the ledger is poisoned by an earlier log failure; reopen it")]
    Poisoned,
    /// A durable record does not apply to the state rebuilt before it.
    #[error("journal record {sequence} does not replay: {reason}")]
    Replay {
        /// The record's sequence number.
        sequence: u64,
        /// What went wrong.
        reason: String,
    },
    /// The state cannot be digested.
    #[error(transparent)]
    Digest(#[from] LedgerDigestError),
}

/// What [`DurableLedger::open`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRecovery {
    /// Records replayed from the log.
    pub records_replayed: u64,
    /// [`DurableLedger::digest`] of the replayed state, before open
    /// reservations were released: the digest of the last durable state.
    pub digest_at_recovery: LedgerDigest,
    /// Journal ids of the reservations that were open and have been released.
    pub released_reservations: Vec<u64>,
}

/// State changed only under the journal lock.
struct Journal {
    /// Journal id of the next reservation.
    next_reservation: u64,
    /// Records appended so far (the log's next sequence number).
    records: u64,
}

/// A [`BudgetEngine`] whose every operation is journaled durably.
///
/// The engine itself is private: every mutation goes through the ledger's
/// methods, so nothing can change the books without a journal record.
///
/// ```
/// use calybris_finance::DurableLedger;
/// use calybris_wal::DurableConfig;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("calybris-ledger-doc-{}", std::process::id()));
/// # let _ = std::fs::remove_dir_all(&dir);
/// let (ledger, _) = DurableLedger::open(&dir, DurableConfig::default())?;
/// ledger.ensure_tenant("acme", 1_000)?;
/// ledger.try_reserve("acme", 400)?.commit(250)?; // acknowledged once durable
/// let digest = ledger.digest()?;
/// ledger.close()?;
///
/// let (reopened, recovery) = DurableLedger::open(&dir, DurableConfig::default())?;
/// assert_eq!(recovery.digest_at_recovery, digest);
/// assert_eq!(reopened.ledger("acme")?.committed_microcents, 250);
/// # drop(reopened);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
pub struct DurableLedger {
    engine: BudgetEngine,
    wal: DurableWal<JournalRecord>,
    journal: Mutex<Journal>,
    poisoned: AtomicBool,
}

impl std::fmt::Debug for DurableLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableLedger")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}

/// An open reservation of a [`DurableLedger`].
///
/// Like [`Reservation`], it is settled once: commit, release, or drop (which
/// releases it and journals the release; a log failure during a drop poisons
/// the ledger, since a drop cannot report it).
#[must_use = "dropping a reservation releases it at once"]
pub struct DurableReservation<'a> {
    ledger: &'a DurableLedger,
    inner: Option<Reservation>,
    journal_id: u64,
}

impl std::fmt::Debug for DurableReservation<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableReservation")
            .field("journal_id", &self.journal_id)
            .field("inner", &self.inner)
            .finish()
    }
}

impl DurableLedger {
    /// Opens (or creates) the journal directory at `path`, replays it, and
    /// releases the reservations that were open at the crash (see the module
    /// docs).
    ///
    /// # Errors
    ///
    /// [`LedgerError::Wal`] if the log is locked, corrupt, or unreadable;
    /// [`LedgerError::Replay`] if a record does not apply.
    pub fn open(path: &Path, config: DurableConfig) -> Result<(Self, LedgerRecovery), LedgerError> {
        let key = config.key.clone();
        // Opening the writer first takes the directory lock and cuts a torn tail,
        // so the reader below sees exactly the durable records.
        let wal = DurableWal::<JournalRecord>::open(path, config)?;
        let (engine, open, journal) = replay_log(path, key.as_ref())?;
        let ledger = Self {
            engine,
            wal,
            journal: Mutex::new(journal),
            poisoned: AtomicBool::new(false),
        };
        let digest_at_recovery = ledger.digest()?;
        let records_replayed = ledger.journal.lock().records;
        let mut open = open;
        let mut released_reservations: Vec<u64> = open.keys().copied().collect();
        released_reservations.sort_unstable();
        for id in &released_reservations {
            if let Some(reservation) = open.remove(id) {
                let mut orphan = DurableReservation {
                    ledger: &ledger,
                    inner: Some(reservation),
                    journal_id: *id,
                };
                orphan.settle(None)?;
            }
        }
        Ok((
            ledger,
            LedgerRecovery {
                records_replayed,
                digest_at_recovery,
                released_reservations,
            },
        ))
    }

    /// A snapshot of the books (its version is the engine's own counter; see
    /// [`snapshot_with_watermark`](Self::snapshot_with_watermark) for one
    /// bound to the journal).
    pub fn snapshot(&self) -> BudgetSnapshot {
        self.engine.snapshot()
    }

    /// A consistent copy of one tenant's books.
    ///
    /// # Errors
    ///
    /// [`BudgetError::UnknownTenant`].
    pub fn ledger(&self, tenant_id: &str) -> Result<TenantLedger, BudgetError> {
        self.engine.ledger(tenant_id)
    }

    /// Sets a tenant's reservation limits (see [`BudgetEngine::set_limits`]).
    ///
    /// Limits are configuration, not books: they are not journaled, so set
    /// them again after every [`open`](Self::open).
    ///
    /// # Errors
    ///
    /// As [`BudgetEngine::set_limits`].
    pub fn set_limits(&self, tenant_id: &str, limits: TenantLimits) -> Result<(), BudgetError> {
        self.engine.set_limits(tenant_id, limits)
    }

    /// Checks that every tenant's books balance.
    ///
    /// # Errors
    ///
    /// The first tenant whose books do not balance.
    pub fn verify_conservation(&self) -> Result<(), ConservationViolation> {
        self.engine.verify_conservation()
    }

    /// A conservation proof of the current state, bound to the journal (see
    /// [`digest`](Self::digest)).
    ///
    /// # Errors
    ///
    /// [`LedgerError::Digest`] (never for tenants created by the engine).
    pub fn prove_conservation(&self) -> Result<ConservationProof, LedgerError> {
        let (snapshot, records) = self.snapshot_with_watermark();
        Ok(prove_snapshot(&snapshot, Some(records))?)
    }

    /// The ledger digest of the current state, bound to the journal.
    ///
    /// The snapshot's version is set to the number of records journaled and
    /// the same number is bound as the WAL high watermark, so the digest names
    /// the exact log prefix the state comes from and is identical after a
    /// recovery from that prefix.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Digest`] (never for tenants created by the engine).
    pub fn digest(&self) -> Result<LedgerDigest, LedgerError> {
        let (snapshot, records) = self.snapshot_with_watermark();
        Ok(ledger_digest(&snapshot, Some(records))?)
    }

    /// Rebuilds the books from the journal at `path` for reading only: no
    /// writer lock is taken, nothing is written, and a torn tail is ignored
    /// rather than cut. Reservations open at the end of the journal are
    /// released in the returned engine (the same rule as [`open`](Self::open),
    /// but not journaled). For auditors and offline checks; a writer must use
    /// `open`.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Wal`] if the journal is corrupt, keyed differently or
    /// unreadable; [`LedgerError::Replay`] if a record does not apply.
    pub fn recover(
        path: &Path,
        key: Option<&WalKey>,
    ) -> Result<(BudgetEngine, LedgerRecovery), LedgerError> {
        let (engine, open, journal) = replay_log(path, key)?;
        let mut snapshot = engine.snapshot();
        snapshot.version = journal.records;
        let digest_at_recovery = ledger_digest(&snapshot, Some(journal.records))?;
        let mut released_reservations: Vec<u64> = open.keys().copied().collect();
        released_reservations.sort_unstable();
        // Dropping the handles releases the holds in memory.
        drop(open);
        Ok((
            engine,
            LedgerRecovery {
                records_replayed: journal.records,
                digest_at_recovery,
                released_reservations,
            },
        ))
    }

    /// A snapshot taken under the journal lock, its version set to the count
    /// of records journaled, and that count (the WAL high watermark).
    pub fn snapshot_with_watermark(&self) -> (BudgetSnapshot, u64) {
        let journal = self.journal.lock();
        let mut snapshot = self.engine.snapshot();
        snapshot.version = journal.records;
        (snapshot, journal.records)
    }

    /// Creates a tenant durably (or leaves an existing one untouched).
    ///
    /// # Errors
    ///
    /// As [`BudgetEngine::ensure_tenant`], plus log failures.
    pub fn ensure_tenant(
        &self,
        tenant_id: &str,
        initial_microcents: i64,
    ) -> Result<TenantCreation, LedgerError> {
        self.check_poison()?;
        let ticket = {
            let mut journal = self.journal.lock();
            let created = self.engine.ensure_tenant(tenant_id, initial_microcents)?;
            if created == TenantCreation::AlreadyExists {
                return Ok(created);
            }
            self.append(
                &mut journal,
                &JournalRecord::TenantCreated {
                    tenant_id: tenant_id.to_owned(),
                    initial_microcents,
                },
            )?
        };
        self.wait(&ticket)?;
        Ok(TenantCreation::Created)
    }

    /// Tops a tenant up durably.
    ///
    /// # Errors
    ///
    /// As [`BudgetEngine::top_up`], plus log failures.
    pub fn top_up(&self, tenant_id: &str, amount_microcents: i64) -> Result<(), LedgerError> {
        self.check_poison()?;
        let ticket = {
            let mut journal = self.journal.lock();
            self.engine.top_up(tenant_id, amount_microcents)?;
            self.append(
                &mut journal,
                &JournalRecord::ToppedUp {
                    tenant_id: tenant_id.to_owned(),
                    amount_microcents,
                },
            )?
        };
        self.wait(&ticket)
    }

    /// Reserves durably: returns once the `Reserved` record is durable.
    ///
    /// # Errors
    ///
    /// As [`BudgetEngine::try_reserve`], plus log failures (on which the
    /// in-memory hold is released again).
    pub fn try_reserve(
        &self,
        tenant_id: &str,
        amount_microcents: i64,
    ) -> Result<DurableReservation<'_>, LedgerError> {
        self.check_poison()?;
        let (ticket, reservation) = {
            let mut journal = self.journal.lock();
            let reservation = self.engine.try_reserve(tenant_id, amount_microcents)?;
            let journal_id = journal.next_reservation;
            let record = JournalRecord::Reserved {
                reservation: journal_id,
                tenant_id: tenant_id.to_owned(),
                amount_microcents,
            };
            // If the append fails, dropping `reservation` undoes the hold, so
            // memory and log still agree and the ledger is not poisoned.
            let ticket = self.wal.append(&record)?;
            journal.records = journal.records.saturating_add(1);
            journal.next_reservation = journal_id.saturating_add(1);
            (
                ticket,
                DurableReservation {
                    ledger: self,
                    inner: Some(reservation),
                    journal_id,
                },
            )
        };
        self.wait(&ticket)?;
        Ok(reservation)
    }

    /// Makes everything journaled durable and closes the log.
    ///
    /// # Errors
    ///
    /// [`LedgerError::Wal`] if a write or sync failed.
    pub fn close(self) -> Result<(), LedgerError> {
        self.wal.close()?;
        Ok(())
    }

    fn check_poison(&self) -> Result<(), LedgerError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(LedgerError::Poisoned);
        }
        Ok(())
    }

    /// Appends a record for an operation already applied in memory; a failure
    /// poisons the ledger, since memory is now ahead of the log.
    fn append(
        &self,
        journal: &mut Journal,
        record: &JournalRecord,
    ) -> Result<calybris_wal::Ticket, LedgerError> {
        match self.wal.append(record) {
            Ok(ticket) => {
                journal.records = journal.records.saturating_add(1);
                Ok(ticket)
            }
            Err(error) => {
                self.poisoned.store(true, Ordering::Release);
                Err(error.into())
            }
        }
    }

    fn wait(&self, ticket: &calybris_wal::Ticket) -> Result<(), LedgerError> {
        match ticket.wait() {
            Ok(_) => Ok(()),
            Err(error) => {
                self.poisoned.store(true, Ordering::Release);
                Err(error.into())
            }
        }
    }
}

impl DurableReservation<'_> {
    /// The journal's id of this reservation.
    pub fn journal_id(&self) -> u64 {
        self.journal_id
    }

    /// The amount held.
    pub fn held_microcents(&self) -> i64 {
        self.inner.as_ref().map_or(0, Reservation::held_microcents)
    }

    /// Commits durably; see [`Reservation::commit`].
    ///
    /// # Errors
    ///
    /// [`LedgerError::Budget`] if the engine refused (the reservation is then
    /// released on drop, as it is consumed here), or a log failure.
    pub fn commit(mut self, actual_microcents: i64) -> Result<Settlement, LedgerError> {
        self.settle(Some((actual_microcents, false)))
    }

    /// Commits durably, debiting any excess over the hold; see
    /// [`Reservation::commit_with_overrun`].
    ///
    /// # Errors
    ///
    /// As [`commit`](Self::commit).
    pub fn commit_with_overrun(
        mut self,
        actual_microcents: i64,
    ) -> Result<Settlement, LedgerError> {
        self.settle(Some((actual_microcents, true)))
    }

    /// Releases durably.
    ///
    /// # Errors
    ///
    /// A log failure.
    pub fn release(mut self) -> Result<Settlement, LedgerError> {
        self.settle(None)
    }

    /// Settles: `Some((actual, overrun))` commits, `None` releases.
    fn settle(&mut self, commit: Option<(i64, bool)>) -> Result<Settlement, LedgerError> {
        let Some(reservation) = self.inner.take() else {
            return Err(LedgerError::Poisoned);
        };
        let ledger = self.ledger;
        ledger.check_poison()?;
        let (ticket, settlement) = {
            let mut journal = ledger.journal.lock();
            let (settlement, record) = match commit {
                Some((actual_microcents, overrun)) => {
                    let result = if overrun {
                        reservation.commit_with_overrun(actual_microcents)
                    } else {
                        reservation.commit(actual_microcents)
                    };
                    match result {
                        Ok(settlement) => (
                            settlement,
                            JournalRecord::Committed {
                                reservation: self.journal_id,
                                actual_microcents,
                            },
                        ),
                        Err(refused) => {
                            // Keep the hold open so the caller's drop (or a
                            // later release) journals its release.
                            let refused = *refused;
                            self.inner = Some(refused.reservation);
                            return Err(refused.error.into());
                        }
                    }
                }
                None => (
                    reservation.release(),
                    JournalRecord::Released {
                        reservation: self.journal_id,
                    },
                ),
            };
            (ledger.append(&mut journal, &record)?, settlement)
        };
        ledger.wait(&ticket)?;
        Ok(settlement)
    }
}

impl Drop for DurableReservation<'_> {
    fn drop(&mut self) {
        if self.inner.is_some() && self.settle(None).is_err() {
            // `settle` already poisoned the ledger on a log failure; an engine
            // refusal cannot happen on release.
            self.ledger.poisoned.store(true, Ordering::Release);
        }
    }
}

/// Replays every verified record of the journal at `path` into a fresh engine.
fn replay_log(
    path: &Path,
    key: Option<&WalKey>,
) -> Result<(BudgetEngine, HashMap<u64, Reservation>, Journal), LedgerError> {
    let mut reader = SegmentedReader::<JournalRecord>::open(path, key, None)?;
    let engine = BudgetEngine::new();
    let mut open: HashMap<u64, Reservation> = HashMap::new();
    let mut journal = Journal {
        next_reservation: 0,
        records: 0,
    };
    while let Some(entry) = reader.next_entry()? {
        replay(
            &engine,
            &mut open,
            &mut journal,
            entry.sequence,
            entry.record,
        )?;
        journal.records = entry.sequence.saturating_add(1);
    }
    Ok((engine, open, journal))
}

/// Applies one durable record to the state rebuilt so far.
fn replay(
    engine: &BudgetEngine,
    open: &mut HashMap<u64, Reservation>,
    journal: &mut Journal,
    sequence: u64,
    record: JournalRecord,
) -> Result<(), LedgerError> {
    let refuse = |reason: String| LedgerError::Replay { sequence, reason };
    match record {
        JournalRecord::TenantCreated {
            tenant_id,
            initial_microcents,
        } => match engine.ensure_tenant(&tenant_id, initial_microcents) {
            Ok(TenantCreation::Created) => Ok(()),
            Ok(TenantCreation::AlreadyExists) => {
                Err(refuse(format!("tenant {tenant_id:?} created twice")))
            }
            Err(error) => Err(refuse(error.to_string())),
        },
        JournalRecord::ToppedUp {
            tenant_id,
            amount_microcents,
        } => engine
            .top_up(&tenant_id, amount_microcents)
            .map_err(|e| refuse(e.to_string())),
        JournalRecord::Reserved {
            reservation,
            tenant_id,
            amount_microcents,
        } => {
            if reservation != journal.next_reservation {
                return Err(refuse(format!(
                    "reservation id {reservation}, expected {}",
                    journal.next_reservation
                )));
            }
            let hold = engine
                .try_reserve(&tenant_id, amount_microcents)
                .map_err(|e| refuse(e.to_string()))?;
            open.insert(reservation, hold);
            journal.next_reservation = reservation.saturating_add(1);
            Ok(())
        }
        JournalRecord::Committed {
            reservation,
            actual_microcents,
        } => {
            let hold = open
                .remove(&reservation)
                .ok_or_else(|| refuse(format!("reservation {reservation} is not open")))?;
            hold.commit_with_overrun(actual_microcents)
                .map(|_| ())
                .map_err(|refused| refuse(refused.error.to_string()))
        }
        JournalRecord::Released { reservation } => {
            let hold = open
                .remove(&reservation)
                .ok_or_else(|| refuse(format!("reservation {reservation} is not open")))?;
            hold.release();
            Ok(())
        }
    }
}
