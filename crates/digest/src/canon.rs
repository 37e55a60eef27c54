//! The canonical byte writer every CALY layout is built with: integers little-endian at
//! their exact width, enums as their code, booleans as one byte, optionals as a presence
//! byte followed by the value only when present.

use sha2::{Digest as _, Sha256};

/// A 32-byte SHA-256 digest.
///
/// It prints (`Display`, `Debug`, `{:x}`) as 64 lowercase hex characters and parses
/// back from them (`FromStr`, [`HexError`](crate::HexError) on anything else). It
/// dereferences to its bytes and converts to and from `[u8; 32]`, and compares with
/// one, so code written for plain byte arrays keeps working. With the `serde`
/// feature it is serialized exactly as a `[u8; 32]` (transparent), so every stored
/// record keeps its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Serialize, serde::Deserialize),
    serde(transparent)
)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest's bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest's bytes, by value.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }
}

impl core::ops::Deref for Digest {
    type Target = [u8; 32];
    fn deref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::ops::DerefMut for Digest {
    fn deref_mut(&mut self) -> &mut [u8; 32] {
        &mut self.0
    }
}

impl AsRef<[u8]> for Digest {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8; 32]> for Digest {
    fn as_ref(&self) -> &[u8; 32] {
        &self.0
    }
}

impl core::borrow::Borrow<[u8; 32]> for Digest {
    fn borrow(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for Digest {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl TryFrom<&[u8]> for Digest {
    type Error = core::array::TryFromSliceError;

    /// A digest from exactly 32 bytes.
    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        <[u8; 32]>::try_from(bytes).map(Self)
    }
}

impl From<Digest> for [u8; 32] {
    fn from(digest: Digest) -> Self {
        digest.0
    }
}

impl PartialEq<[u8; 32]> for Digest {
    fn eq(&self, other: &[u8; 32]) -> bool {
        self.0 == *other
    }
}

impl PartialEq<Digest> for [u8; 32] {
    fn eq(&self, other: &Digest) -> bool {
        *self == other.0
    }
}

/// The length of every layout tag: 8 ASCII characters and a NUL.
pub const TAG_LEN: usize = 9;

/// Tag of the policy layout.
pub const POLICY_DIGEST_TAG: &[u8; TAG_LEN] = b"calypol1\0";
/// Tag of the input layout.
pub const INPUT_DIGEST_TAG: &[u8; TAG_LEN] = b"calyinp1\0";
/// Tag of the decision layout.
pub const DECISION_DIGEST_TAG: &[u8; TAG_LEN] = b"calydcn1\0";
/// Tag of the decision identity layout.
pub const IDENTITY_DIGEST_TAG: &[u8; TAG_LEN] = b"calyidn1\0";
/// Tag of the selection layout.
pub const SELECTION_DIGEST_TAG: &[u8; TAG_LEN] = b"calysel1\0";
/// Tag of the outcome layout.
pub const OUTCOME_DIGEST_TAG: &[u8; TAG_LEN] = b"calyout1\0";
/// Tag of the budget ledger layout (written by [`crate::ledger_digest_of`]).
pub const LEDGER_DIGEST_TAG: &[u8; TAG_LEN] = b"calyldg1\0";
/// Tag of the tenant-number layout (written by [`crate::tenant_number`]).
pub const TENANT_NUMBER_TAG: &[u8; TAG_LEN] = b"calytnt1\0";

/// Where canonical bytes go: a hasher in production, a byte vector in tests.
pub trait Sink {
    /// Appends raw bytes.
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Sha256 {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// Writes one canonical layout into a [`Sink`].
///
/// Public so that other crates of the project (the ledger digest, for one) build their
/// layouts with the same conventions instead of a second copy of them.
#[derive(Debug)]
pub struct Canon<S: Sink> {
    sink: S,
}

impl Canon<Sha256> {
    /// Starts a SHA-256 layout with its tag.
    #[must_use]
    pub fn sha256(tag: &[u8; TAG_LEN]) -> Self {
        let mut c = Self {
            sink: Sha256::new(),
        };
        c.sink.put(tag);
        c
    }

    /// The digest of everything written.
    #[must_use]
    pub fn finish(self) -> Digest {
        Digest(self.sink.finalize().into())
    }
}

impl<S: Sink> Canon<S> {
    /// Starts a layout with its tag over any sink.
    pub fn with_sink(tag: &[u8; TAG_LEN], mut sink: S) -> Self {
        sink.put(tag);
        Self { sink }
    }

    /// The sink, with everything written so far.
    pub fn into_sink(self) -> S {
        self.sink
    }

    /// Writes raw bytes as they are.
    #[inline(always)]
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.sink.put(b);
        self
    }
    /// Writes a [`Digest`] as its 32 raw bytes.
    #[inline(always)]
    pub fn digest(&mut self, d: &Digest) -> &mut Self {
        self.bytes(d.as_bytes())
    }
    /// Writes a `u8`.
    #[inline(always)]
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes(&[v])
    }
    /// Writes a `u16`, little-endian.
    #[inline(always)]
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Writes a `u32`, little-endian.
    #[inline(always)]
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Writes a `u64`, little-endian.
    #[inline(always)]
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Writes an `i64`, little-endian two's complement.
    #[inline(always)]
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    /// Writes a boolean as one byte, 0 or 1.
    #[inline(always)]
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    /// Writes an optional value: a presence byte, then the value only when present.
    #[inline(always)]
    pub fn opt<T>(&mut self, v: Option<T>, write: impl FnOnce(&mut Self, T)) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(x) => {
                self.u8(1);
                write(self, x);
                self
            }
        }
    }
}
