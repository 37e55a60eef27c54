//! C2SP tlog-checkpoint: the note text `<origin>\n<size>\n<base64 root>\n`
//! followed by optional non-empty extension lines; and the witness rule that
//! cosigns only a checkpoint consistent with the last one it cosigned.

use crate::merkle::{HASH_LEN_BYTES, Hash, MAX_TREE_SIZE, ProofError, verify_consistency};
use crate::note::{
    Ed25519Signer, NoteError, Signer, VerifiedNote, Verifier, cosignature_line, decode_canonical,
    encode_base64, open_note, sign_note,
};

/// Most extension lines read from a checkpoint.
pub const MAX_EXTENSION_LINES: usize = 32;

/// Why a checkpoint text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A line is missing, empty, or the text does not end in a newline.
    #[error("malformed checkpoint: {detail}")]
    Malformed {
        /// What is wrong.
        detail: &'static str,
    },
    /// The size is not a canonical decimal, or exceeds [`MAX_TREE_SIZE`].
    #[error("tree size out of range or not canonical decimal")]
    BadSize,
    /// The root is not canonical base64 of 32 bytes.
    #[error("root hash is not canonical base64 of 32 bytes")]
    BadRoot,
    /// The note around it.
    #[error(transparent)]
    Note(#[from] NoteError),
    /// Another origin than expected.
    #[error("origin {found:?} is not the expected {expected:?}")]
    WrongOrigin {
        /// Expected origin.
        expected: String,
        /// The checkpoint's.
        found: String,
    },
}

/// A tree head: the log's origin, its size and root, and extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The origin line: names the log.
    pub origin: String,
    /// Leaves in the tree.
    pub size: u64,
    /// The RFC 6962 root.
    pub root: Hash,
    /// Extension lines, without their newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The note text.
    #[must_use]
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            encode_base64(&self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// Parses a checkpoint note text (not a signed note; see
    /// [`open_checkpoint`]).
    ///
    /// # Errors
    /// [`CheckpointError`].
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let malformed = |detail| CheckpointError::Malformed { detail };
        let body = text
            .strip_suffix('\n')
            .ok_or(malformed("no final newline"))?;
        let mut lines = body.split('\n');
        let origin = lines.next().ok_or(malformed("no origin line"))?;
        if origin.is_empty() {
            return Err(malformed("empty origin line"));
        }
        let size = parse_size(lines.next().ok_or(malformed("no size line"))?)?;
        let root_text = lines.next().ok_or(malformed("no root hash line"))?;
        let root: Hash = decode_canonical(root_text, "root hash")
            .map_err(|_| CheckpointError::BadRoot)?
            .try_into()
            .map_err(|_| CheckpointError::BadRoot)?;
        let mut extensions = Vec::new();
        for line in lines {
            if line.is_empty() {
                return Err(malformed("empty extension line"));
            }
            if extensions.len() >= MAX_EXTENSION_LINES {
                return Err(malformed("too many extension lines"));
            }
            extensions.push(line.to_owned());
        }
        debug_assert_eq!(root.len(), HASH_LEN_BYTES);
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Signs the checkpoint, giving the note.
    ///
    /// # Errors
    /// A signer's error.
    pub fn sign(&self, signers: &[&dyn Signer]) -> Result<String, CheckpointError> {
        Ok(sign_note(&self.to_text(), signers)?)
    }
}

/// A tree size: ASCII decimal without leading zeros, at most [`MAX_TREE_SIZE`].
fn parse_size(text: &str) -> Result<u64, CheckpointError> {
    if text.is_empty()
        || text.len() > 19
        || !text.bytes().all(|b| b.is_ascii_digit())
        || (text.len() > 1 && text.starts_with('0'))
    {
        return Err(CheckpointError::BadSize);
    }
    let size: u64 = text.parse().map_err(|_| CheckpointError::BadSize)?;
    if size > MAX_TREE_SIZE {
        return Err(CheckpointError::BadSize);
    }
    Ok(size)
}

/// Opens a signed checkpoint note with the log's key(s) and parses it.
///
/// # Errors
/// [`CheckpointError`].
pub fn open_checkpoint(
    note: &[u8],
    verifiers: &[Verifier],
) -> Result<(Checkpoint, VerifiedNote), CheckpointError> {
    let verified = open_note(note, verifiers)?;
    let checkpoint = Checkpoint::parse(&verified.text)?;
    Ok((checkpoint, verified))
}

/// Why a witness refuses to cosign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WitnessError {
    /// The checkpoint is not signed by the log, or is malformed.
    #[error("checkpoint refused: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// Its origin is not the origin the witness follows.
    #[error("origin {found:?}, but the witness follows {expected:?}")]
    WrongOrigin {
        /// The origin in the state.
        expected: String,
        /// The checkpoint's.
        found: String,
    },
    /// Smaller than the last cosigned tree, or not consistent with it.
    #[error("not consistent with the last cosigned checkpoint: {0}")]
    NotConsistent(ProofError),
    /// Cosigning failed.
    #[error("cosigning failed: {0}")]
    Cosign(#[from] NoteError),
}

/// Cosigns `note` (a checkpoint signed by `log`) when it is consistent with
/// `last` (the last checkpoint this witness cosigned; `None` the first time),
/// returning the cosigned note and the checkpoint to keep as the new state.
///
/// # Errors
/// [`WitnessError`]: the witness fails closed on every doubt.
pub fn witness_cosign(
    note: &[u8],
    log: &Verifier,
    last: Option<&Checkpoint>,
    proof: &[Hash],
    cosigner: &Ed25519Signer,
    timestamp: u64,
) -> Result<(String, Checkpoint), WitnessError> {
    let (checkpoint, verified) = open_checkpoint(note, std::slice::from_ref(log))?;
    if let Some(last) = last {
        if last.origin != checkpoint.origin {
            return Err(WitnessError::WrongOrigin {
                expected: last.origin.clone(),
                found: checkpoint.origin,
            });
        }
        verify_consistency(
            last.size,
            checkpoint.size,
            &last.root,
            &checkpoint.root,
            proof,
        )
        .map_err(WitnessError::NotConsistent)?;
    }
    let line = cosignature_line(&verified.text, cosigner, timestamp)?;
    // The note is valid UTF-8 and ends with a newline: open_note checked it.
    let mut out = String::from_utf8_lossy(note).into_owned();
    out.push_str(&line);
    Ok((out, checkpoint))
}
