//! Conformance tests against the published `calybris-core` crate live in `tests/`; this library is empty on purpose.
