//! The compare-and-swap loops the flat tenants ([`crate::tenant`]) and the budget
//! tree's nodes ([`crate::tree`]) share: each is the one lock-free step on one
//! balance or one gate word, written once.
//!
//! Every loop uses `compare_exchange_weak` with relaxed ordering on the balance (the
//! gate word's acquire/release orders the balances around it) and re-reads the
//! value the failed exchange saw, so it retries only while another thread changes
//! the same word.

use crate::sync::{AtomicI64, AtomicU64, Ordering, reload, wait_a_little};

/// Takes `amount` (positive) from `balance` if the balance covers it.
///
/// # Errors
/// The balance seen, when it is below `amount` (nothing is taken).
pub(crate) fn take_if_covered(balance: &AtomicI64, amount: i64) -> Result<(), i64> {
    debug_assert!(amount > 0, "only a positive amount is taken");
    let mut current = balance.load(Ordering::Relaxed);
    loop {
        if current < amount {
            return Err(current);
        }
        match balance.compare_exchange_weak(
            current,
            current - amount,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Ok(()),
            Err(seen) => current = seen,
        }
    }
}

/// Takes as much of `amount` (positive) from `balance` as it holds, down to zero;
/// returns what was taken.
pub(crate) fn take_up_to(balance: &AtomicI64, amount: i64) -> i64 {
    debug_assert!(amount > 0, "only a positive amount is taken");
    let mut current = balance.load(Ordering::Relaxed);
    loop {
        let taken = amount.min(current.max(0));
        if taken == 0 {
            return 0;
        }
        match balance.compare_exchange_weak(
            current,
            current - taken,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => return taken,
            Err(seen) => current = seen,
        }
    }
}

/// Adds `amount` (positive) to `total` unless the sum would overflow an `i64`.
///
/// # Errors
/// The total seen, when the sum would overflow (nothing is added).
pub(crate) fn add_unless_overflow(total: &AtomicI64, amount: i64) -> Result<(), i64> {
    debug_assert!(amount > 0, "only a positive amount is added");
    let mut current = total.load(Ordering::Relaxed);
    loop {
        let Some(next) = current.checked_add(amount) else {
            return Err(current);
        };
        match total.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Ok(()),
            Err(seen) => current = seen,
        }
    }
}

/// Sets `frozen` in the gate word (waiting while another freezer holds it), then
/// waits until no operation is in flight (`in_flight_mask` of the word reads zero).
///
/// Returns the word seen once the row or node is still. The acquire load pairs
/// with the release of every operation's leave, so each finished operation's
/// balance updates are visible once the count reads zero.
pub(crate) fn freeze_gate(gate: &AtomicU64, frozen: u64, in_flight_mask: u64) -> u64 {
    debug_assert!(
        frozen & in_flight_mask == 0,
        "the frozen bit is not a count bit"
    );
    let mut attempt = 0_u32;
    let mut current = gate.load(Ordering::Relaxed);
    loop {
        if current & frozen != 0 {
            wait_a_little(attempt);
            attempt = attempt.saturating_add(1);
            current = reload(gate, Ordering::Relaxed);
            continue;
        }
        match gate.compare_exchange_weak(
            current,
            current | frozen,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(seen) => current = seen,
        }
    }
    attempt = 0;
    loop {
        let word = reload(gate, Ordering::Acquire);
        if word & in_flight_mask == 0 {
            return word;
        }
        wait_a_little(attempt);
        attempt = attempt.saturating_add(1);
    }
}
