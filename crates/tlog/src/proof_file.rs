//! The JSON proof files of the `calybris` command line (feature `json`),
//! defined here once: an inclusion proof (`calybris prove`, read by `calybris
//! verify-proof`) and a consistency proof (`calybris consistency --out`, read
//! by `calybris consistency --proof` and `calybris witness cosign --proof`).
//!
//! Both are one JSON object with exactly the fields below (unknown fields are
//! refused), at most [`MAX_PROOF_FILE_BYTES`]; hashes are canonical standard
//! base64 of 32 bytes, the entry hash 64 lowercase hex digits, and a proof
//! holds at most [`MAX_CONSISTENCY_HASHES`] hashes. [`InclusionProof::parse`]
//! and [`ConsistencyProof::parse`] check the syntax (a typed
//! [`ProofFileError`] names what is wrong); whether a proof verifies is for
//! [`verify_inclusion`](crate::verify_inclusion) and
//! [`verify_consistency`](crate::verify_consistency) against a checkpoint.

use serde::{Deserialize, Serialize};

use crate::merkle::{HASH_LEN_BYTES, Hash, MAX_CONSISTENCY_HASHES, leaf_hash};
use crate::note::{decode_canonical, encode_base64};

/// The `format` of an inclusion proof file.
pub const INCLUSION_FORMAT: &str = "calybris-inclusion-proof/v1";

/// The `format` of a consistency proof file.
pub const CONSISTENCY_FORMAT: &str = "calybris-consistency-proof/v1";

/// Largest proof file read, in bytes.
pub const MAX_PROOF_FILE_BYTES: usize = 64 * 1024;

/// Why a proof file does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofFileError {
    /// Larger than [`MAX_PROOF_FILE_BYTES`].
    #[error("a proof file of {len_bytes} bytes exceeds {MAX_PROOF_FILE_BYTES}")]
    TooLarge {
        /// Its length.
        len_bytes: usize,
    },
    /// Not the JSON object of the format (a missing, unknown or mistyped
    /// field).
    #[error("not a proof file: {detail}")]
    Json {
        /// serde_json's message.
        detail: String,
    },
    /// Another `format` than the one expected.
    #[error("format {found:?}, expected {expected:?}")]
    Format {
        /// The format found.
        found: String,
        /// The format expected.
        expected: &'static str,
    },
    /// A hash field that is not canonical base64 of 32 bytes (or, for
    /// `entry_hash`, 64 lowercase hex digits).
    #[error("{field} is not a 32-byte hash in its encoding")]
    BadHash {
        /// The field.
        field: &'static str,
    },
    /// More proof hashes than any tree needs.
    #[error("{hashes} proof hashes, more than {MAX_CONSISTENCY_HASHES}")]
    TooManyHashes {
        /// How many.
        hashes: usize,
    },
}

/// An inclusion proof as written by `calybris prove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProofFile {
    /// Always [`INCLUSION_FORMAT`].
    pub format: String,
    /// The checkpoint origin.
    pub origin: String,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The root, base64.
    pub root_hash: String,
    /// The record's sequence number, which is its leaf index.
    pub sequence: u64,
    /// The record's entry hash (the leaf input), lowercase hex.
    pub entry_hash: String,
    /// SHA-256(0x00 || entry hash), base64.
    pub leaf_hash: String,
    /// The proof hashes, bottom first, base64.
    pub hashes: Vec<String>,
}

/// A consistency proof as written by `calybris consistency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProofFile {
    /// Always [`CONSISTENCY_FORMAT`].
    pub format: String,
    /// The older size.
    pub old_size: u64,
    /// The newer size.
    pub new_size: u64,
    /// The proof hashes, bottom first, base64.
    pub hashes: Vec<String>,
}

/// A parsed inclusion proof file, its hashes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// The checkpoint origin.
    pub origin: String,
    /// The tree size.
    pub tree_size: u64,
    /// The root.
    pub root: Hash,
    /// The record's sequence (leaf index).
    pub sequence: u64,
    /// The record's entry hash.
    pub entry: Hash,
    /// The leaf hash the file states.
    pub leaf: Hash,
    /// The proof, bottom first.
    pub hashes: Vec<Hash>,
}

/// A parsed consistency proof file, its hashes decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// The older size.
    pub old_size: u64,
    /// The newer size.
    pub new_size: u64,
    /// The proof, bottom first.
    pub hashes: Vec<Hash>,
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ProofFileError> {
    if bytes.len() > MAX_PROOF_FILE_BYTES {
        return Err(ProofFileError::TooLarge {
            len_bytes: bytes.len(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| ProofFileError::Json {
        detail: e.to_string(),
    })
}

fn hash_b64(text: &str, field: &'static str) -> Result<Hash, ProofFileError> {
    decode_canonical(text, "hash")
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or(ProofFileError::BadHash { field })
}

fn hashes_b64(texts: &[String]) -> Result<Vec<Hash>, ProofFileError> {
    if texts.len() > MAX_CONSISTENCY_HASHES {
        return Err(ProofFileError::TooManyHashes {
            hashes: texts.len(),
        });
    }
    texts.iter().map(|t| hash_b64(t, "a proof hash")).collect()
}

/// Lowercase hex of a hash.
#[must_use]
pub fn hex(bytes: &Hash) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Hash> {
    if text.len() != 2 * HASH_LEN_BYTES
        || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    let mut hash = [0u8; HASH_LEN_BYTES];
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(hash)
}

impl InclusionProof {
    /// Parses an inclusion proof file.
    ///
    /// # Errors
    /// [`ProofFileError`], naming the field at fault.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProofFileError> {
        let file: InclusionProofFile = json(bytes)?;
        if file.format != INCLUSION_FORMAT {
            return Err(ProofFileError::Format {
                found: file.format,
                expected: INCLUSION_FORMAT,
            });
        }
        Ok(Self {
            root: hash_b64(&file.root_hash, "root_hash")?,
            entry: unhex(&file.entry_hash).ok_or(ProofFileError::BadHash {
                field: "entry_hash",
            })?,
            leaf: hash_b64(&file.leaf_hash, "leaf_hash")?,
            hashes: hashes_b64(&file.hashes)?,
            origin: file.origin,
            tree_size: file.tree_size,
            sequence: file.sequence,
        })
    }

    /// Whether the stated leaf hash is the leaf hash of the entry hash.
    #[must_use]
    pub fn leaf_matches_entry(&self) -> bool {
        leaf_hash(&self.entry) == self.leaf
    }

    /// The file form (what [`InclusionProof::parse`] reads back).
    #[must_use]
    pub fn to_file(&self) -> InclusionProofFile {
        InclusionProofFile {
            format: INCLUSION_FORMAT.to_owned(),
            origin: self.origin.clone(),
            tree_size: self.tree_size,
            root_hash: encode_base64(&self.root),
            sequence: self.sequence,
            entry_hash: hex(&self.entry),
            leaf_hash: encode_base64(&self.leaf),
            hashes: self.hashes.iter().map(|h| encode_base64(h)).collect(),
        }
    }
}

impl ConsistencyProof {
    /// Parses a consistency proof file.
    ///
    /// # Errors
    /// [`ProofFileError`], naming the field at fault.
    pub fn parse(bytes: &[u8]) -> Result<Self, ProofFileError> {
        let file: ConsistencyProofFile = json(bytes)?;
        if file.format != CONSISTENCY_FORMAT {
            return Err(ProofFileError::Format {
                found: file.format,
                expected: CONSISTENCY_FORMAT,
            });
        }
        Ok(Self {
            old_size: file.old_size,
            new_size: file.new_size,
            hashes: hashes_b64(&file.hashes)?,
        })
    }

    /// The file form (what [`ConsistencyProof::parse`] reads back).
    #[must_use]
    pub fn to_file(&self) -> ConsistencyProofFile {
        ConsistencyProofFile {
            format: CONSISTENCY_FORMAT.to_owned(),
            old_size: self.old_size,
            new_size: self.new_size,
            hashes: self.hashes.iter().map(|h| encode_base64(h)).collect(),
        }
    }
}
