//! C2SP signed notes with Ed25519 keys, and C2SP tlog-cosignature/v1
//! timestamped cosignatures.
//!
//! A note is a text ending in a newline, a blank line, then one line per
//! signature: `— <name> <base64(key id || signature)>`. Keys are strings: a
//! verifier key `<name>+<key id hex>+<base64(type || public key)>` and a signer
//! key `PRIVATE+KEY+<name>+<key id hex>+<base64(type || seed)>`, where the key
//! id is the first four bytes of SHA-256(name || 0x0A || type || public key).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::hazmat::ExpandedSecretKey;
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

/// Signature type of a plain Ed25519 note signature (C2SP signed-note).
pub const ALG_ED25519: u8 = 0x01;

/// Signature type of a timestamped Ed25519 cosignature (C2SP tlog-cosignature).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// First line of the message a cosignature/v1 signs.
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1";

/// Largest note read, in bytes: checkpoints are a few hundred bytes, and a
/// bound keeps a hostile input from costing more than a bounded parse.
pub const MAX_NOTE_BYTES: usize = 64 * 1024;

/// Most signature lines read from one note (C2SP asks for at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Largest key name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;

/// The em dash that opens a signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// The prefix of a signer key string.
const SKEY_PREFIX: &str = "PRIVATE+KEY+";

const ED25519_KEY_BYTES: usize = 32;
const ED25519_SIG_BYTES: usize = 64;
const KEY_ID_BYTES: usize = 4;
const TIMESTAMP_BYTES: usize = 8;

/// Why a key, a note or a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NoteError {
    /// The input is longer than [`MAX_NOTE_BYTES`].
    #[error("note of {len_bytes} bytes exceeds {MAX_NOTE_BYTES}")]
    Oversized {
        /// Its length.
        len_bytes: usize,
    },
    /// Not UTF-8, a control character other than newline, or no final newline.
    #[error("malformed note: {detail}")]
    Malformed {
        /// What is wrong.
        detail: &'static str,
    },
    /// No blank line separates the text from the signatures, or none follows.
    #[error("the note has no signature lines")]
    Unsigned,
    /// More than [`MAX_SIGNATURES`] signature lines.
    #[error("more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    /// A signature line that is not `— name base64`.
    #[error("malformed signature line {line}")]
    MalformedSignature {
        /// 1-based index of the signature line.
        line: usize,
    },
    /// Base64 that does not decode, or not in its one canonical form.
    #[error("non-canonical or invalid base64 in {what}")]
    Base64 {
        /// Where.
        what: &'static str,
    },
    /// A key name that is empty, too long, or holds a space or `+`.
    #[error("invalid key name")]
    BadName,
    /// A key string with the wrong number of fields, a bad key id or bad length.
    #[error("malformed key: {detail}")]
    BadKey {
        /// What is wrong.
        detail: &'static str,
    },
    /// A key of another signature type than expected.
    #[error("unsupported signature type 0x{found:02x}")]
    WrongAlgorithm {
        /// The type byte found.
        found: u8,
    },
    /// The key id in a key string is not the one its name and key give.
    #[error("key id does not match the key")]
    KeyIdMismatch,
    /// A known key signs the note twice.
    #[error("key {name} signs the note twice")]
    DuplicateSignature {
        /// The key name.
        name: String,
    },
    /// A signature by a known key does not verify.
    #[error("the signature of {name} does not verify")]
    SignatureInvalid {
        /// The key name.
        name: String,
    },
    /// No signature by any of the given keys.
    #[error("no signature by a known key")]
    NoKnownSignature,
    /// A signer failed.
    #[error("signing failed: {detail}")]
    SignerFailed {
        /// Why.
        detail: String,
    },
}

/// The C2SP key id: SHA-256(name || 0x0A || type || public key)`[:4]`, big-endian.
#[must_use]
pub fn key_id(name: &str, alg: u8, public_key: &[u8]) -> u32 {
    let mut hasher = Sha256::new();
    hasher.update(name.as_bytes());
    hasher.update([b'\n', alg]);
    hasher.update(public_key);
    let digest = hasher.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Checks a key name: non-empty, at most [`MAX_NAME_BYTES`], no Unicode space,
/// no `+`, no control character.
///
/// # Errors
/// [`NoteError::BadName`].
pub fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
    {
        return Err(NoteError::BadName);
    }
    Ok(())
}

/// Decodes base64 that must be in its canonical form (padding, zero trailing
/// bits): re-encoding gives back the same text.
///
/// # Errors
/// [`NoteError::Base64`].
pub fn decode_canonical(text: &str, what: &'static str) -> Result<Vec<u8>, NoteError> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| NoteError::Base64 { what })?;
    if BASE64.encode(&bytes) != text {
        return Err(NoteError::Base64 { what });
    }
    Ok(bytes)
}

/// Base64 (standard alphabet, padded).
#[must_use]
pub fn encode_base64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Something that signs notes under one name: an in-memory Ed25519 key
/// ([`Ed25519Signer`]), or a KMS or HSM behind this trait.
pub trait Signer {
    /// The key name.
    fn name(&self) -> &str;
    /// The key id.
    fn key_id(&self) -> u32;
    /// The signature of `message` (64 bytes for Ed25519).
    ///
    /// # Errors
    /// [`NoteError::SignerFailed`] when the signing service fails.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, NoteError>;
}

/// An Ed25519 signer key held in memory.
///
/// The seed is expanded once, when the signer is made (SHA-512 of the seed:
/// the secret scalar and the nonce prefix of RFC 8032, section 5.1.5), and
/// the public key computed once, so a signature costs the RFC 8032 signing
/// steps alone.
pub struct Ed25519Signer {
    name: String,
    alg: u8,
    key: SigningKey,
    /// `key`'s expansion, kept so no signature re-derives it.
    expanded: ExpandedSecretKey,
    /// `key`'s public key.
    public: VerifyingKey,
    key_id: u32,
}

impl Clone for Ed25519Signer {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            alg: self.alg,
            key: self.key.clone(),
            expanded: ExpandedSecretKey::from(self.key.as_bytes()),
            public: self.public,
            key_id: self.key_id,
        }
    }
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

impl Ed25519Signer {
    /// A note signer (type 0x01) from a 32-byte seed.
    ///
    /// # Errors
    /// [`NoteError::BadName`].
    pub fn from_seed(name: &str, seed: &[u8; ED25519_KEY_BYTES]) -> Result<Self, NoteError> {
        Self::with_alg(name, ALG_ED25519, seed)
    }

    /// A cosigner (type 0x04) from a 32-byte seed.
    ///
    /// # Errors
    /// [`NoteError::BadName`].
    pub fn cosigner_from_seed(
        name: &str,
        seed: &[u8; ED25519_KEY_BYTES],
    ) -> Result<Self, NoteError> {
        Self::with_alg(name, ALG_COSIGNATURE_V1, seed)
    }

    fn with_alg(name: &str, alg: u8, seed: &[u8; ED25519_KEY_BYTES]) -> Result<Self, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let public = key.verifying_key();
        let key_id = key_id(name, alg, public.as_bytes());
        Ok(Self {
            name: name.to_owned(),
            alg,
            expanded: ExpandedSecretKey::from(key.as_bytes()),
            key,
            public,
            key_id,
        })
    }

    /// Parses a signer key string `PRIVATE+KEY+name+id+base64(type || seed)`.
    ///
    /// # Errors
    /// [`NoteError::BadKey`], [`NoteError::BadName`], [`NoteError::Base64`],
    /// [`NoteError::WrongAlgorithm`] or [`NoteError::KeyIdMismatch`].
    pub fn from_skey(text: &str) -> Result<Self, NoteError> {
        let text = text.trim_end_matches('\n');
        let rest = text.strip_prefix(SKEY_PREFIX).ok_or(NoteError::BadKey {
            detail: "no PRIVATE+KEY+ prefix",
        })?;
        let (name, id, alg, material) = split_key(rest)?;
        let seed: [u8; ED25519_KEY_BYTES] = material.try_into().map_err(|_| NoteError::BadKey {
            detail: "an Ed25519 seed is 32 bytes",
        })?;
        let signer = Self::with_alg(name, alg, &seed)?;
        if signer.key_id != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(signer)
    }

    /// The signer key string.
    #[must_use]
    pub fn skey(&self) -> String {
        let mut material = vec![self.alg];
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "{SKEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_base64(&material)
        )
    }

    /// The verifier key string of the same key.
    #[must_use]
    pub fn vkey(&self) -> String {
        self.verifier().vkey()
    }

    /// The matching verifier.
    #[must_use]
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            alg: self.alg,
            key: self.public,
            key_id: self.key_id,
        }
    }

    /// The signature type byte (0x01 or 0x04).
    #[must_use]
    pub fn alg(&self) -> u8 {
        self.alg
    }
}

impl Signer for Ed25519Signer {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, NoteError> {
        let signature =
            ed25519_dalek::hazmat::raw_sign::<sha2::Sha512>(&self.expanded, message, &self.public);
        debug_assert!(self.public.verify_strict(message, &signature).is_ok());
        Ok(signature.to_bytes().to_vec())
    }
}

/// Splits `name+id+base64` into its name, key id, type byte and key material.
fn split_key(text: &str) -> Result<(&str, u32, u8, Vec<u8>), NoteError> {
    // The base64 key may itself hold `+`: only the first two are separators.
    let mut fields = text.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(NoteError::BadKey {
            detail: "a key has three +-separated fields",
        });
    };
    check_name(name)?;
    if id.len() != 8 || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(NoteError::BadKey {
            detail: "the key id is 8 lowercase hex digits",
        });
    }
    let id = u32::from_str_radix(id, 16).map_err(|_| NoteError::BadKey {
        detail: "the key id is 8 lowercase hex digits",
    })?;
    let bytes = decode_canonical(key, "key")?;
    let Some((&alg, material)) = bytes.split_first() else {
        return Err(NoteError::BadKey {
            detail: "empty key",
        });
    };
    if alg != ALG_ED25519 && alg != ALG_COSIGNATURE_V1 {
        return Err(NoteError::WrongAlgorithm { found: alg });
    }
    Ok((name, id, alg, material.to_vec()))
}

/// A public key that checks note signatures: type 0x01 (the log's key) or
/// 0x04 (a witness's cosignature key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    alg: u8,
    key: VerifyingKey,
    key_id: u32,
}

impl Verifier {
    /// Parses a verifier key string `name+id+base64(type || public key)`.
    ///
    /// # Errors
    /// [`NoteError::BadKey`], [`NoteError::BadName`], [`NoteError::Base64`],
    /// [`NoteError::WrongAlgorithm`] or [`NoteError::KeyIdMismatch`].
    pub fn from_vkey(text: &str) -> Result<Self, NoteError> {
        let text = text.trim_end_matches('\n');
        if text.len() > MAX_NAME_BYTES + 128 {
            return Err(NoteError::BadKey { detail: "too long" });
        }
        let (name, id, alg, material) = split_key(text)?;
        let bytes: [u8; ED25519_KEY_BYTES] =
            material
                .as_slice()
                .try_into()
                .map_err(|_| NoteError::BadKey {
                    detail: "an Ed25519 public key is 32 bytes",
                })?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| NoteError::BadKey {
            detail: "not an Ed25519 public key",
        })?;
        if key_id(name, alg, &bytes) != id {
            return Err(NoteError::KeyIdMismatch);
        }
        Ok(Self {
            name: name.to_owned(),
            alg,
            key,
            key_id: id,
        })
    }

    /// The verifier key string.
    #[must_use]
    pub fn vkey(&self) -> String {
        let mut material = vec![self.alg];
        material.extend_from_slice(self.key.as_bytes());
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            encode_base64(&material)
        )
    }

    /// The key name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    #[must_use]
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The signature type byte.
    #[must_use]
    pub fn alg(&self) -> u8 {
        self.alg
    }

    /// Checks `signature` (without the key id) over the note `text`; for a
    /// cosignature key, returns the signed timestamp.
    fn check(&self, text: &str, signature: &[u8]) -> Option<Option<u64>> {
        match self.alg {
            ALG_ED25519 => {
                let sig = ed25519_dalek::Signature::from_slice(signature).ok()?;
                self.key
                    .verify_strict(text.as_bytes(), &sig)
                    .ok()
                    .map(|()| None)
            }
            ALG_COSIGNATURE_V1 => {
                if signature.len() != TIMESTAMP_BYTES + ED25519_SIG_BYTES {
                    return None;
                }
                let (time, sig) = signature.split_at(TIMESTAMP_BYTES);
                let timestamp = u64::from_be_bytes(time.try_into().ok()?);
                if timestamp > i64::MAX as u64 {
                    return None;
                }
                let sig = ed25519_dalek::Signature::from_slice(sig).ok()?;
                let message = cosignature_message(text, timestamp);
                self.key
                    .verify_strict(message.as_bytes(), &sig)
                    .ok()
                    .map(|()| Some(timestamp))
            }
            _ => None,
        }
    }
}

/// The message a cosignature/v1 signs: the header line, the time line, then
/// the whole note text.
#[must_use]
pub fn cosignature_message(text: &str, timestamp: u64) -> String {
    format!("{COSIGNATURE_V1_HEADER}\ntime {timestamp}\n{text}")
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// The key name.
    pub name: String,
    /// The key id.
    pub key_id: u32,
    /// The signature bytes after the key id.
    pub signature: Vec<u8>,
}

/// A note whose text at least one given key signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The text, with its final newline.
    pub text: String,
    /// The names of the given keys whose signatures verified, with the
    /// timestamp of each cosignature.
    pub verified_by: Vec<(String, Option<u64>)>,
    /// Every signature line, verified or not, in order.
    pub signatures: Vec<NoteSignature>,
}

fn check_text_chars(text: &str) -> Result<(), NoteError> {
    if text.chars().any(|c| c.is_ascii_control() && c != '\n') {
        return Err(NoteError::Malformed {
            detail: "a control character other than newline",
        });
    }
    Ok(())
}

/// Splits a signed note into its text and its parsed signature lines, without
/// verifying anything.
///
/// # Errors
/// Every malformation as its own [`NoteError`].
pub fn parse_note(note: &[u8]) -> Result<(String, Vec<NoteSignature>), NoteError> {
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::Oversized {
            len_bytes: note.len(),
        });
    }
    let note = std::str::from_utf8(note).map_err(|_| NoteError::Malformed {
        detail: "not UTF-8",
    })?;
    check_text_chars(note)?;
    if !note.ends_with('\n') {
        return Err(NoteError::Malformed {
            detail: "no final newline",
        });
    }
    let split = note.rfind("\n\n").ok_or(NoteError::Unsigned)?;
    let text = &note[..=split];
    let lines = &note[split + 2..];
    if lines.is_empty() {
        return Err(NoteError::Unsigned);
    }
    let mut signatures = Vec::new();
    for (i, line) in lines.split_terminator('\n').enumerate() {
        if i >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        signatures.push(parse_signature_line(line, i + 1)?);
    }
    Ok((text.to_owned(), signatures))
}

fn parse_signature_line(line: &str, index: usize) -> Result<NoteSignature, NoteError> {
    let malformed = NoteError::MalformedSignature { line: index };
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(malformed.clone())?;
    let (name, b64) = rest.split_once(' ').ok_or(malformed.clone())?;
    check_name(name).map_err(|_| malformed.clone())?;
    let bytes = decode_canonical(b64, "signature")?;
    if bytes.len() <= KEY_ID_BYTES {
        return Err(malformed);
    }
    let (id, signature) = bytes.split_at(KEY_ID_BYTES);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        signature: signature.to_vec(),
    })
}

/// Opens a signed note: signatures by keys not in `verifiers` are ignored; a
/// known key's signature must verify and may appear once; at least one must.
///
/// # Errors
/// A malformation, [`NoteError::SignatureInvalid`],
/// [`NoteError::DuplicateSignature`] or [`NoteError::NoKnownSignature`].
pub fn open_note(note: &[u8], verifiers: &[Verifier]) -> Result<VerifiedNote, NoteError> {
    let (text, signatures) = parse_note(note)?;
    let mut verified_by: Vec<(String, Option<u64>)> = Vec::new();
    let mut seen: Vec<(String, u32)> = Vec::new();
    for sig in &signatures {
        let Some(verifier) = verifiers
            .iter()
            .find(|v| v.name == sig.name && v.key_id == sig.key_id)
        else {
            continue;
        };
        if seen
            .iter()
            .any(|(n, id)| *n == sig.name && *id == sig.key_id)
        {
            return Err(NoteError::DuplicateSignature {
                name: sig.name.clone(),
            });
        }
        seen.push((sig.name.clone(), sig.key_id));
        match verifier.check(&text, &sig.signature) {
            Some(timestamp) => verified_by.push((sig.name.clone(), timestamp)),
            None => {
                return Err(NoteError::SignatureInvalid {
                    name: sig.name.clone(),
                });
            }
        }
    }
    if verified_by.is_empty() {
        return Err(NoteError::NoKnownSignature);
    }
    Ok(VerifiedNote {
        text,
        verified_by,
        signatures,
    })
}

/// The signature line of `signer` over `text`.
///
/// # Errors
/// [`NoteError::SignerFailed`] or a bad name.
pub fn signature_line(text: &str, signer: &dyn Signer) -> Result<String, NoteError> {
    check_name(signer.name())?;
    let signature = signer.sign(text.as_bytes())?;
    Ok(format_line(signer.name(), signer.key_id(), &signature))
}

fn format_line(name: &str, key_id: u32, signature: &[u8]) -> String {
    let mut bytes = key_id.to_be_bytes().to_vec();
    bytes.extend_from_slice(signature);
    format!("{SIGNATURE_PREFIX}{name} {}\n", encode_base64(&bytes))
}

/// Signs `text` (which must end in a newline and hold no blank-line-terminated
/// signature block of its own) with every signer, giving the note.
///
/// # Errors
/// [`NoteError::Malformed`] for a bad text, or a signer's error.
pub fn sign_note(text: &str, signers: &[&dyn Signer]) -> Result<String, NoteError> {
    if !text.ends_with('\n') {
        return Err(NoteError::Malformed {
            detail: "no final newline",
        });
    }
    check_text_chars(text)?;
    if signers.is_empty() {
        return Err(NoteError::Unsigned);
    }
    let mut note = format!("{text}\n");
    for signer in signers {
        note.push_str(&signature_line(text, *signer)?);
    }
    if note.len() > MAX_NOTE_BYTES {
        return Err(NoteError::Oversized {
            len_bytes: note.len(),
        });
    }
    Ok(note)
}

/// A cosignature/v1 line of `cosigner` over the note `text` at `timestamp`
/// (POSIX seconds).
///
/// # Errors
/// [`NoteError::WrongAlgorithm`] when the cosigner is not a type 0x04 key,
/// [`NoteError::Malformed`] for a timestamp above 2^63 - 1.
pub fn cosignature_line(
    text: &str,
    cosigner: &Ed25519Signer,
    timestamp: u64,
) -> Result<String, NoteError> {
    if cosigner.alg != ALG_COSIGNATURE_V1 {
        return Err(NoteError::WrongAlgorithm {
            found: cosigner.alg,
        });
    }
    if timestamp > i64::MAX as u64 {
        return Err(NoteError::Malformed {
            detail: "timestamp above 2^63 - 1",
        });
    }
    let signature = cosigner.sign(cosignature_message(text, timestamp).as_bytes())?;
    let mut bytes = timestamp.to_be_bytes().to_vec();
    bytes.extend_from_slice(&signature);
    Ok(format_line(&cosigner.name, cosigner.key_id, &bytes))
}
