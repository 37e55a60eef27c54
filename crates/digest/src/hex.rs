//! Lowercase hexadecimal text of digests, with and without an allocator.

use core::fmt;

const ALPHABET: &[u8; 16] = b"0123456789abcdef";

/// Characters in the hex text of a 32-byte digest.
pub const DIGEST_HEX_LEN: usize = 64;

/// Displays bytes as lowercase hex, without allocating.
///
/// ```
/// use calybris_digest::Hex;
/// assert_eq!(Hex(&[0x00, 0xab, 0xff]).to_string(), "00abff");
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            let pair = [
                ALPHABET[usize::from(b >> 4)],
                ALPHABET[usize::from(b & 0xf)],
            ];
            // Both bytes come from the ASCII alphabet above.
            f.write_str(core::str::from_utf8(&pair).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

/// The 64 lowercase hex characters of a digest, as ASCII bytes (no allocation).
#[must_use]
pub fn digest_hex(digest: &[u8; 32]) -> [u8; DIGEST_HEX_LEN] {
    let mut out = [0u8; DIGEST_HEX_LEN];
    for (pair, b) in out.chunks_exact_mut(2).zip(digest) {
        pair[0] = ALPHABET[usize::from(b >> 4)];
        pair[1] = ALPHABET[usize::from(b & 0xf)];
    }
    out
}

/// The 64 lowercase hex characters of a digest.
#[cfg(feature = "alloc")]
#[must_use]
pub fn digest_to_hex(digest: &[u8; 32]) -> alloc::string::String {
    use alloc::string::ToString;
    Hex(digest).to_string()
}

/// Why a hex text is not a digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HexError {
    /// Not 64 characters long.
    #[error("a digest is 64 hex characters, not {0}")]
    Length(usize),
    /// A character that is not lowercase hex.
    #[error("character {position} is not a lowercase hex digit")]
    Character {
        /// Its byte position.
        position: usize,
    },
}

/// Parses the 64 lowercase hex characters of a digest.
///
/// # Errors
/// [`HexError`] on a wrong length or a character outside `0-9a-f`.
pub fn parse_digest_hex(text: &str) -> Result<[u8; 32], HexError> {
    let bytes = text.as_bytes();
    if bytes.len() != DIGEST_HEX_LEN {
        return Err(HexError::Length(bytes.len()));
    }
    let nibble = |position: usize| -> Result<u8, HexError> {
        match bytes[position] {
            c @ b'0'..=b'9' => Ok(c - b'0'),
            c @ b'a'..=b'f' => Ok(c - b'a' + 10),
            _ => Err(HexError::Character { position }),
        }
    };
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = nibble(2 * i)? << 4 | nibble(2 * i + 1)?;
    }
    Ok(out)
}

impl fmt::Display for crate::Digest {
    /// The 64 lowercase hex characters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Hex(&self.0), f)
    }
}

impl fmt::LowerHex for crate::Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&Hex(&self.0), f)
    }
}

impl fmt::Debug for crate::Digest {
    /// `Digest(` the 64 lowercase hex characters `)`, not 32 numbers.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", Hex(&self.0))
    }
}

impl core::str::FromStr for crate::Digest {
    type Err = HexError;

    /// Exactly 64 lowercase hex characters, as `Display` writes them.
    fn from_str(text: &str) -> Result<Self, HexError> {
        parse_digest_hex(text).map(Self)
    }
}
