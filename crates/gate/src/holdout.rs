//! The holdout: a keyed hash of each request assigns it, independently of everything
//! the policy reads, either to the policy in force or to a **baseline** policy, so the
//! decisions of the holdout are an unbiased sample of what the baseline does on the same
//! traffic (`docs/SPECIFICATION.md`, "Holdout assignment").
//!
//! This module is the only definition of the assignment:
//!
//! ```text
//! mac    = HMAC-SHA-256(holdout key, "calyhld1\0" || input digest (32 bytes, calyinp1))
//! bucket = u64::from_be_bytes(mac[0..8]) mod 10 000
//! holdout  <=>  bucket < share_bps
//! ```
//!
//! and of the key's fingerprint, recorded with every assignment so a verifier given
//! another key says so instead of reporting every decision as mismatched:
//!
//! ```text
//! fingerprint = HMAC-SHA-256(holdout key, "calyhldk\0")[0..8]
//! ```

use calybris_digest::{Digest, SealedPolicy};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The domain tag of a holdout assignment, hashed before the input digest.
pub const HOLDOUT_ASSIGNMENT_TAG: &[u8; 9] = b"calyhld1\0";

/// The domain tag of a holdout key's fingerprint.
pub const HOLDOUT_KEY_FINGERPRINT_TAG: &[u8; 9] = b"calyhldk\0";

/// The shortest holdout key accepted, in bytes.
pub const MIN_HOLDOUT_KEY_BYTES: usize = 32;

/// Basis points in a whole: a share of `10_000` holds out every request.
pub const HOLDOUT_BPS_SCALE: u16 = 10_000;

/// The default holdout share: 20 % of requests.
pub const DEFAULT_HOLDOUT_BPS: u16 = 2_000;

/// The secret that keys the holdout assignment (not the log's chain key: a reader
/// of the log who may verify the chain need not be able to predict the holdout).
#[derive(Clone)]
pub struct HoldoutKey {
    mac: Hmac<Sha256>,
    fingerprint: [u8; 8],
}

impl std::fmt::Debug for HoldoutKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HoldoutKey")
            .field("fingerprint", &calybris_digest::Hex(&self.fingerprint))
            .finish_non_exhaustive()
    }
}

/// Why a holdout could not be configured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HoldoutError {
    /// The key is shorter than [`MIN_HOLDOUT_KEY_BYTES`].
    #[error("a holdout key needs at least {MIN_HOLDOUT_KEY_BYTES} bytes, this one has {len_bytes}")]
    KeyTooShort {
        /// The key's length.
        len_bytes: usize,
    },
    /// The share is above [`HOLDOUT_BPS_SCALE`].
    #[error("a holdout share is at most {HOLDOUT_BPS_SCALE} basis points, not {share_bps}")]
    ShareOutOfRange {
        /// The share asked for.
        share_bps: u16,
    },
}

impl HoldoutKey {
    /// A key from at least [`MIN_HOLDOUT_KEY_BYTES`] secret bytes.
    ///
    /// # Errors
    /// [`HoldoutError::KeyTooShort`].
    pub fn new(secret: &[u8]) -> Result<Self, HoldoutError> {
        if secret.len() < MIN_HOLDOUT_KEY_BYTES {
            return Err(HoldoutError::KeyTooShort {
                len_bytes: secret.len(),
            });
        }
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| {
            HoldoutError::KeyTooShort {
                len_bytes: secret.len(),
            }
        })?;
        let full = mac
            .clone()
            .chain_update(HOLDOUT_KEY_FINGERPRINT_TAG)
            .finalize()
            .into_bytes();
        let mut fingerprint = [0; 8];
        fingerprint.copy_from_slice(&full[..8]);
        Ok(Self { mac, fingerprint })
    }

    /// The key's fingerprint (recorded in every [`HoldoutNote`]).
    #[must_use]
    pub const fn fingerprint(&self) -> [u8; 8] {
        self.fingerprint
    }

    /// The request's bucket in `0..10_000`, from its input digest (`calyinp1`).
    #[must_use]
    pub fn bucket(&self, input_digest: &Digest) -> u16 {
        let mac = self
            .mac
            .clone()
            .chain_update(HOLDOUT_ASSIGNMENT_TAG)
            .chain_update(input_digest.0)
            .finalize()
            .into_bytes();
        let mut head = [0; 8];
        head.copy_from_slice(&mac[..8]);
        let bucket = u64::from_be_bytes(head) % u64::from(HOLDOUT_BPS_SCALE);
        // Below 10 000 by the modulo.
        bucket as u16
    }

    /// Whether a request of this input digest is held out at `share_bps`.
    #[must_use]
    pub fn is_held_out(&self, input_digest: &Digest, share_bps: u16) -> bool {
        self.bucket(input_digest) < share_bps
    }
}

/// The holdout of a gate ([`crate::GateConfig::holdout`]): the key, the share of
/// requests held out and the baseline policy they get.
#[derive(Debug, Clone)]
pub struct HoldoutConfig {
    key: HoldoutKey,
    share_bps: u16,
    baseline: SealedPolicy,
}

impl HoldoutConfig {
    /// A holdout of [`DEFAULT_HOLDOUT_BPS`] (20 %) under `key`, deciding the held-out
    /// requests under `baseline`.
    #[must_use]
    pub fn new(key: HoldoutKey, baseline: SealedPolicy) -> Self {
        Self {
            key,
            share_bps: DEFAULT_HOLDOUT_BPS,
            baseline,
        }
    }

    /// Sets the share held out, in basis points (0 turns the holdout off: no request
    /// is held out and no [`HoldoutNote`] is written).
    ///
    /// # Errors
    /// [`HoldoutError::ShareOutOfRange`] above [`HOLDOUT_BPS_SCALE`].
    pub fn share_bps(mut self, share_bps: u16) -> Result<Self, HoldoutError> {
        if share_bps > HOLDOUT_BPS_SCALE {
            return Err(HoldoutError::ShareOutOfRange { share_bps });
        }
        self.share_bps = share_bps;
        Ok(self)
    }

    /// The share held out, in basis points.
    #[must_use]
    pub const fn share(&self) -> u16 {
        self.share_bps
    }

    /// The key.
    #[must_use]
    pub const fn key(&self) -> &HoldoutKey {
        &self.key
    }

    /// The baseline policy.
    #[must_use]
    pub const fn baseline(&self) -> &SealedPolicy {
        &self.baseline
    }

    /// Whether any request can be held out.
    #[must_use]
    pub const fn is_on(&self) -> bool {
        self.share_bps > 0
    }

    /// The assignment of a request of this input digest.
    #[must_use]
    pub fn assign(&self, input_digest: &Digest) -> HoldoutNote {
        HoldoutNote {
            share_bps: self.share_bps,
            key_fingerprint: self.key.fingerprint,
            held_out: self.key.is_held_out(input_digest, self.share_bps),
            baseline_digest: *self.baseline.digest(),
        }
    }
}

/// The holdout assignment of one decision, recorded with it
/// ([`crate::record::GateDecision::holdout`]).
///
/// A held-out decision was made under the baseline: its audit record's policy digest
/// is [`Self::baseline_digest`]. The verifier, given the holdout key, recomputes
/// [`Self::held_out`] from the input digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HoldoutNote {
    /// The share held out when the decision was made, in basis points.
    pub share_bps: u16,
    /// [`HoldoutKey::fingerprint`] of the key that assigned it.
    pub key_fingerprint: [u8; 8],
    /// Whether the request was held out (decided under the baseline).
    pub held_out: bool,
    /// Digest of the baseline policy (`calypol1`).
    pub baseline_digest: Digest,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_and_large_shares_are_refused() {
        assert_eq!(
            HoldoutKey::new(&[7; 31]).unwrap_err(),
            HoldoutError::KeyTooShort { len_bytes: 31 }
        );
        let key = HoldoutKey::new(&[7; 32]).unwrap();
        let policy = SealedPolicy::new(
            calybris_kernel::PolicySnapshot::builder()
                .model(calybris_kernel::KernelModel {
                    model_id: 1,
                    provider_id: 0,
                    quality_bps: 9_000,
                    risk_ceiling_bps: 9_000,
                    enabled: 1,
                    p95_latency_ms: 100,
                    capabilities: 0,
                    region_mask: 1,
                    input_cost_microunits_per_million_tokens: 1_000_000,
                    output_cost_microunits_per_million_tokens: 1_000_000,
                })
                .build()
                .unwrap(),
        );
        let config = HoldoutConfig::new(key, policy);
        assert_eq!(config.share(), DEFAULT_HOLDOUT_BPS);
        assert!(matches!(
            config.clone().share_bps(10_001),
            Err(HoldoutError::ShareOutOfRange { share_bps: 10_001 })
        ));
        let all = config.clone().share_bps(10_000).unwrap();
        let none = config.share_bps(0).unwrap();
        for n in 0..64u8 {
            let digest = Digest([n; 32]);
            assert!(all.assign(&digest).held_out);
            assert!(!none.assign(&digest).held_out);
        }
    }

    #[test]
    fn the_bucket_is_keyed() {
        let a = HoldoutKey::new(&[1; 32]).unwrap();
        let b = HoldoutKey::new(&[2; 32]).unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        let differ = (0..64u8)
            .filter(|n| a.bucket(&Digest([*n; 32])) != b.bucket(&Digest([*n; 32])))
            .count();
        assert!(
            differ > 50,
            "only {differ} of 64 buckets differ between keys"
        );
    }
}
