//! SplitMix64 and the seed convention of the randomised tests.

/// The environment variable that overrides the seed of a randomised test.
pub const SEED_VAR: &str = "CALYBRIS_SEED";

/// SplitMix64 (Steele, Lea and Flood, 2014): small, fast, seeded, and the same on every
/// machine. Not for cryptography.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// In `0..bound` (`0` when `bound` is 0), by the modulo: the bias is negligible
    /// for the small bounds of a workload or a test.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// In `low..=high` (`low` when `high < low`), by the modulo.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        let span = high.saturating_sub(low);
        match span.checked_add(1) {
            Some(count) => low + self.next_u64() % count,
            None => self.next_u64(),
        }
    }

    /// True with probability `percent` / 100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }

    /// One of `items`, uniformly (by the modulo); `None` when there are none.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        let index = usize::try_from(self.below(items.len() as u64)).ok()?;
        items.get(index)
    }
}

/// A seed as text: decimal, or hex after `0x`, surrounding spaces ignored.
#[must_use]
pub fn parse_seed(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The seed of a randomised run: [`SEED_VAR`] (`CALYBRIS_SEED`) when it is set, else
/// `default`.
///
/// # Panics
///
/// When the variable is set to something [`parse_seed`] does not read: a test asked
/// to replay a seed must not quietly run another one.
#[must_use]
pub fn seed_from_env(default: u64) -> u64 {
    match std::env::var(SEED_VAR) {
        Ok(text) => parse_seed(&text)
            .unwrap_or_else(|| panic!("{SEED_VAR}={text:?} is not a u64 (decimal or 0x-hex)")),
        Err(_) => default,
    }
}
