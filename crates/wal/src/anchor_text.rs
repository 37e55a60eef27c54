//! The text form of a [`WalAnchor`]: `NEXT_SEQUENCE:HEAD_HASH_HEX`, the decimal
//! sequence number, a colon, and the 64 lowercase hex characters of the head hash
//! (for example `3:` followed by 64 hex digits). It is what a person copies from
//! one system to another, so `Display` writes it and `FromStr` reads it back.

use core::fmt;
use core::str::FromStr;

use crate::format::ENTRY_HASH_LEN_BYTES;
use crate::recovery::WalAnchor;

/// The separator between the sequence number and the hash.
const SEPARATOR: char = ':';
/// Characters in the hex text of a head hash.
const HASH_HEX_LEN: usize = 2 * ENTRY_HASH_LEN_BYTES;
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Why a text is not an anchor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorTextError {
    /// There is no `:` between the sequence number and the hash.
    #[error("no ':' between the sequence number and the hash")]
    NoSeparator,
    /// The part before the `:` is not a decimal `u64` (digits only, no sign).
    #[error("the sequence is not a decimal u64")]
    Sequence,
    /// The hash is not 64 characters long.
    #[error("the hash is not 64 lowercase hex digits (it has {0} characters)")]
    HashLength(usize),
    /// A character of the hash is not a lowercase hex digit.
    #[error("the hash is not 64 lowercase hex digits (character {position} is not)")]
    HashCharacter {
        /// Its byte position within the hash.
        position: usize,
    },
}

impl fmt::Display for WalAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{SEPARATOR}", self.next_sequence)?;
        for byte in self.head_hash {
            let high = HEX_DIGITS[usize::from(byte >> 4)];
            let low = HEX_DIGITS[usize::from(byte & 0xf)];
            write!(f, "{}{}", char::from(high), char::from(low))?;
        }
        Ok(())
    }
}

impl FromStr for WalAnchor {
    type Err = AnchorTextError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (sequence, hash) = text
            .split_once(SEPARATOR)
            .ok_or(AnchorTextError::NoSeparator)?;
        Ok(Self {
            next_sequence: parse_sequence(sequence)?,
            head_hash: parse_hash(hash)?,
        })
    }
}

/// Digits only: `u64::from_str` would also take a leading `+`, which the text form
/// never writes.
fn parse_sequence(text: &str) -> Result<u64, AnchorTextError> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AnchorTextError::Sequence);
    }
    text.parse().map_err(|_| AnchorTextError::Sequence)
}

fn parse_hash(text: &str) -> Result<[u8; ENTRY_HASH_LEN_BYTES], AnchorTextError> {
    let bytes = text.as_bytes();
    if bytes.len() != HASH_HEX_LEN {
        return Err(AnchorTextError::HashLength(bytes.len()));
    }
    let nibble = |position: usize| match bytes[position] {
        c @ b'0'..=b'9' => Ok(c - b'0'),
        c @ b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(AnchorTextError::HashCharacter { position }),
    };
    let mut hash = [0u8; ENTRY_HASH_LEN_BYTES];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = (nibble(2 * i)? << 4) | nibble(2 * i + 1)?;
    }
    Ok(hash)
}
