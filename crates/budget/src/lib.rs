//! calybris-budget: not yet implemented; see the open issue for this crate.
