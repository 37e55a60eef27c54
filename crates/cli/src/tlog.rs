//! Transparency commands: keys, signed checkpoints, inclusion and consistency
//! proofs, and a minimal witness, on top of `calybris-tlog`.
//!
//! The tree of a log lives beside it: `<DIR>/tlog/` for a gate or segment
//! directory, `<FILE>.tlog/` for one segment file. It holds the tiles
//! (`tile/...`, each written once) and `checkpoint`, the last signed tree head.
//! Every command prints one line: `VERIFIED ...` or `OK ...` on success (exit
//! 0), `DIVERGED <REASON>: ...` when a proof or signature does not hold (exit
//! 1), `ERROR <REASON>: ...` when the job could not be done (exit 2).

use std::path::{Path, PathBuf};

use calybris::wal::WalKey;
use calybris_tlog::note::encode_base64;
use calybris_tlog::{
    Checkpoint, Ed25519Signer, FsTiles, Hash, TileStore, TileWriter, Verifier, build_from_log,
    consistency_proof, inclusion_proof, leaf_hash, open_checkpoint, verify_consistency,
    verify_inclusion, witness_cosign,
};

use crate::report::{EXIT_OK, Outcome, Reason};
use crate::scan::log_dir_of;
use crate::{stderr_line, stdout_text};

/// The folder beside a log that holds its tree.
pub const TLOG_DIR: &str = "tlog";

/// The file in the tree folder that holds the last signed checkpoint.
pub const CHECKPOINT_FILE: &str = "checkpoint";

/// Beside the checkpoint of a segment directory's tree: the log's position at
/// its tree size (`SEQ:HEX`, the entry hash of its last record), the link a
/// later `calybris checkpoint` resumes the chain from.
pub const LINK_FILE: &str = "checkpoint.link";

pub use calybris_tlog::proof_file::{
    CONSISTENCY_FORMAT, ConsistencyProofFile, INCLUSION_FORMAT, InclusionProofFile,
};
use calybris_tlog::proof_file::{ConsistencyProof, InclusionProof, ProofFileError};

/// Largest proof, key or checkpoint file read, in bytes.
pub const MAX_INPUT_BYTES: u64 = 64 * 1024;

/// A command's failure: its reason and one sentence.
#[derive(Debug)]
struct Failure(Reason, String);

type Result<T> = std::result::Result<T, Failure>;

fn fail(reason: Reason, detail: impl Into<String>) -> Failure {
    Failure(reason, detail.into())
}

fn finish(result: Result<String>) -> u8 {
    match result {
        Ok(line) => {
            stdout_text(&format!("{line}\n"));
            EXIT_OK
        }
        Err(Failure(reason, detail)) => {
            let outcome = reason.outcome();
            let line = format!("{} {}: {detail}", outcome.word(), reason.code());
            if outcome == Outcome::Error {
                stderr_line(&line);
            } else {
                stdout_text(&format!("{line}\n"));
            }
            outcome.exit_code()
        }
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .map_err(|e| fail(Reason::Unreadable, format!("{}: {e}", path.display())))?;
    if meta.len() > MAX_INPUT_BYTES {
        return Err(fail(
            Reason::BadArgument,
            format!("{} is larger than {MAX_INPUT_BYTES} bytes", path.display()),
        ));
    }
    std::fs::read(path).map_err(|e| fail(Reason::Unreadable, format!("{}: {e}", path.display())))
}

fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_bounded(path)?).map_err(|_| {
        fail(
            Reason::BadArgument,
            format!("{} is not UTF-8", path.display()),
        )
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes)
        .map_err(|e| fail(Reason::Unreadable, format!("{}: {e}", path.display())))
}

fn tree_dir(target: &Path) -> PathBuf {
    if target.is_dir() {
        target.join(TLOG_DIR)
    } else {
        let mut name = target.as_os_str().to_owned();
        name.push(".tlog");
        PathBuf::from(name)
    }
}

fn log_path(target: &Path) -> PathBuf {
    if target.is_dir() {
        log_dir_of(target)
    } else {
        target.to_path_buf()
    }
}

fn wal_key(key_file: Option<&Path>) -> Result<Option<WalKey>> {
    key_file
        .map(|path| {
            let bytes = read_bounded(path)?;
            WalKey::new(&bytes).map_err(|e| fail(Reason::BadArgument, e.to_string()))
        })
        .transpose()
}

fn verifier(path: &Path) -> Result<Verifier> {
    Verifier::from_vkey(read_text(path)?.trim())
        .map_err(|e| fail(Reason::BadArgument, format!("{}: {e}", path.display())))
}

fn signer(path: &Path) -> Result<Ed25519Signer> {
    Ed25519Signer::from_skey(read_text(path)?.trim())
        .map_err(|e| fail(Reason::BadArgument, format!("{}: {e}", path.display())))
}

fn open_signed(path: &Path, key: &Verifier) -> Result<Checkpoint> {
    let note = read_bounded(path)?;
    open_checkpoint(&note, std::slice::from_ref(key))
        .map(|(checkpoint, _)| checkpoint)
        .map_err(|e| {
            fail(
                Reason::CheckpointSignatureInvalid,
                format!("{}: {e}", path.display()),
            )
        })
}

/// A proof file that does not parse: `UNKNOWN_FORMAT`.
fn proof_file_failure(path: &Path, error: &ProofFileError) -> Failure {
    fail(
        Reason::UnknownFormat,
        format!("{}: {error}", path.display()),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `calybris keygen NAME [--out PREFIX] [--witness]`: writes `PREFIX.skey` and
/// `PREFIX.vkey` (a type 0x04 cosigner key with `--witness`).
pub fn keygen(name: &str, out: &Path, witness: bool) -> u8 {
    finish((|| {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| fail(Reason::Unreadable, e.to_string()))?;
        let key = if witness {
            Ed25519Signer::cosigner_from_seed(name, &seed)
        } else {
            Ed25519Signer::from_seed(name, &seed)
        }
        .map_err(|e| fail(Reason::BadArgument, e.to_string()))?;
        let skey = out.with_extension("skey");
        let vkey = out.with_extension("vkey");
        if skey.exists() {
            return Err(fail(
                Reason::BadArgument,
                format!("{} exists", skey.display()),
            ));
        }
        write_file(&skey, format!("{}\n", key.skey()).as_bytes())?;
        write_file(&vkey, format!("{}\n", key.vkey()).as_bytes())?;
        Ok(format!("OK {} {}", vkey.display(), key.vkey()))
    })())
}

/// `calybris checkpoint DIR --key SKEY [--origin O] [--key-file F]`: builds the
/// tiles of every record of the log, signs the tree head, writes
/// `tlog/checkpoint` (and, for a segment directory, `tlog/checkpoint.link`)
/// and prints it.
///
/// With an earlier checkpoint it resumes: the earlier note must verify under
/// this key and the tiles must give its root. For a segment directory with
/// its link file, only the link's segment and the records after it are read
/// (the link's leaf proves into the signed root, and the chain must pass
/// through it); otherwise the log is read from its start and every earlier
/// record is checked against its stored leaf.
pub fn checkpoint(target: &Path, key: &Path, origin: Option<&str>, key_file: Option<&Path>) -> u8 {
    finish((|| {
        let signer = signer(key)?;
        let wal_key = wal_key(key_file)?;
        let dir = tree_dir(target);
        let log = log_path(target);
        let mut link = None;
        let mut writer = if dir.join(CHECKPOINT_FILE).exists() {
            let last = open_signed(&dir.join(CHECKPOINT_FILE), &signer.verifier())?;
            let writer = TileWriter::resume(FsTiles::new(&dir), last.size).map_err(|e| {
                fail(
                    Reason::UnknownFormat,
                    format!("tiles of size {}: {e}", last.size),
                )
            })?;
            if writer.root() != last.root {
                return Err(fail(
                    Reason::NotConsistent,
                    format!(
                        "the tiles of size {} do not give the root of the last checkpoint",
                        last.size
                    ),
                ));
            }
            if log.is_dir() && dir.join(LINK_FILE).exists() {
                let text = read_text(&dir.join(LINK_FILE))?;
                let anchor: calybris::wal::WalAnchor = text.trim().parse().map_err(|e| {
                    fail(
                        Reason::UnknownFormat,
                        format!("{}: {e}", dir.join(LINK_FILE).display()),
                    )
                })?;
                link = Some(anchor);
            }
            writer
        } else {
            TileWriter::new(FsTiles::new(&dir))
        };
        let built = if log.is_dir() {
            let start = link.unwrap_or(calybris::wal::WalAnchor::GENESIS);
            if start.next_sequence != writer.size() {
                // A link of another size than the checkpoint: read from the start.
                calybris_tlog::build_from_log(&log, wal_key.as_ref(), &mut writer)
                    .map(|(size, root)| (size, root, None))
            } else {
                calybris_tlog::extend_from_log_dir(&log, wal_key.as_ref(), &mut writer, start)
                    .map(|(size, root, anchor)| (size, root, Some(anchor)))
            }
        } else {
            build_from_log(&log, wal_key.as_ref(), &mut writer)
                .map(|(size, root)| (size, root, None))
        };
        let (size, root, anchor) = built.map_err(|e| {
            let reason = match e {
                calybris_tlog::BuildError::Rewritten { .. } => Reason::NotConsistent,
                _ => Reason::ChainBroken,
            };
            fail(reason, e.to_string())
        })?;
        let checkpoint = Checkpoint {
            origin: origin
                .unwrap_or(calybris_tlog::Signer::name(&signer))
                .to_owned(),
            size,
            root,
            extensions: vec![],
        };
        let note = checkpoint
            .sign(&[&signer])
            .map_err(|e| fail(Reason::BadArgument, e.to_string()))?;
        // The link first: a checkpoint file never names a size its link
        // does not (a stale link is of another size, and ignored).
        match anchor {
            Some(anchor) => write_file(&dir.join(LINK_FILE), format!("{anchor}\n").as_bytes())?,
            None => {
                let _ = std::fs::remove_file(dir.join(LINK_FILE));
            }
        }
        write_file(&dir.join(CHECKPOINT_FILE), note.as_bytes())?;
        stdout_text(&note);
        Ok(format!(
            "OK checkpoint size {size} in {}",
            dir.join(CHECKPOINT_FILE).display()
        ))
    })())
}

/// The checkpoint last written beside the log, read without verifying (the
/// proof's reader verifies it against the log's key).
fn local_checkpoint(dir: &Path) -> Result<Checkpoint> {
    let note = read_bounded(&dir.join(CHECKPOINT_FILE))?;
    let (text, _) = calybris_tlog::note::parse_note(&note)
        .map_err(|e| fail(Reason::UnknownFormat, e.to_string()))?;
    Checkpoint::parse(&text).map_err(|e| fail(Reason::UnknownFormat, e.to_string()))
}

/// `calybris prove DIR --seq N [--out FILE]`: the inclusion proof of record N
/// in the tree of the last checkpoint, its hashes read from the tiles.
pub fn prove(target: &Path, sequence: u64, out: Option<&Path>, key_file: Option<&Path>) -> u8 {
    finish((|| {
        let dir = tree_dir(target);
        let checkpoint = local_checkpoint(&dir)?;
        let tiles = TileStore::new(FsTiles::new(&dir), checkpoint.size)
            .map_err(|e| fail(Reason::UnknownFormat, e.to_string()))?;
        let hashes = inclusion_proof(&tiles, sequence, checkpoint.size)
            .map_err(|e| fail(Reason::BadArgument, e.to_string()))?;
        let entry = entry_hash(&log_path(target), sequence, wal_key(key_file)?.as_ref())?;
        let leaf = leaf_hash(&entry);
        // The leaf in the tiles must be the record's: a proof is never built
        // for a leaf that the log does not hold.
        let tiled = calybris_tlog::HashSource::subtree(&tiles, 0, sequence)
            .map_err(|e| fail(Reason::UnknownFormat, e.to_string()))?;
        if tiled != leaf {
            return Err(fail(
                Reason::InclusionProofInvalid,
                format!("the tiles hold another leaf for record {sequence}"),
            ));
        }
        let file = InclusionProofFile {
            format: INCLUSION_FORMAT.to_owned(),
            origin: checkpoint.origin,
            tree_size: checkpoint.size,
            root_hash: encode_base64(&checkpoint.root),
            sequence,
            entry_hash: hex(&entry),
            leaf_hash: encode_base64(&leaf),
            hashes: hashes.iter().map(|h| encode_base64(h)).collect(),
        };
        let json = serde_json::to_string_pretty(&file)
            .map_err(|e| fail(Reason::BadArgument, e.to_string()))?;
        match out {
            Some(path) => {
                write_file(path, format!("{json}\n").as_bytes())?;
                Ok(format!(
                    "OK proof of record {sequence} in tree size {} written to {}",
                    file.tree_size,
                    path.display()
                ))
            }
            None => Ok(json),
        }
    })())
}

fn entry_hash(log: &Path, sequence: u64, key: Option<&WalKey>) -> Result<Hash> {
    use calybris::wal::FrameSource as _;
    let mut frames = calybris::wal::LogFrames::open(log, key, None)
        .map_err(|e| fail(Reason::Unreadable, e.to_string()))?;
    while let Some(frame) = frames
        .next_frame()
        .map_err(|e| fail(Reason::ChainBroken, e.to_string()))?
    {
        if frame.sequence == sequence {
            return Ok(frame.hash);
        }
    }
    Err(fail(
        Reason::BadArgument,
        format!("the log holds no record {sequence}"),
    ))
}

/// `calybris verify-proof PROOF --checkpoint FILE --public-key VKEY`.
pub fn verify_proof(proof: &Path, checkpoint: &Path, public_key: &Path) -> u8 {
    finish((|| {
        let key = verifier(public_key)?;
        let checkpoint = open_signed(checkpoint, &key)?;
        let file = InclusionProof::parse(&read_bounded(proof)?)
            .map_err(|e| proof_file_failure(proof, &e))?;
        let invalid = |detail: String| fail(Reason::InclusionProofInvalid, detail);
        if file.origin != checkpoint.origin || file.tree_size != checkpoint.size {
            return Err(invalid(
                "the proof is for another tree than the checkpoint".into(),
            ));
        }
        if file.root != checkpoint.root {
            return Err(invalid("the proof's root is not the checkpoint's".into()));
        }
        if !file.leaf_matches_entry() {
            return Err(invalid(
                "leaf_hash is not the leaf hash of entry_hash".into(),
            ));
        }
        let (leaf, hashes) = (file.leaf, &file.hashes);
        verify_inclusion(
            &leaf,
            file.sequence,
            checkpoint.size,
            hashes,
            &checkpoint.root,
        )
        .map_err(|e| invalid(format!("record {}: {e}", file.sequence)))?;
        Ok(format!(
            "VERIFIED record {} (entry hash {}) is in {} at tree size {}",
            file.sequence,
            hex(&file.entry),
            checkpoint.origin,
            checkpoint.size
        ))
    })())
}

/// `calybris consistency OLD NEW --public-key VKEY (--dir DIR [--out F] | --proof F)`.
pub fn consistency(
    old: &Path,
    new: &Path,
    public_key: &Path,
    dir: Option<&Path>,
    proof: Option<&Path>,
    out: Option<&Path>,
) -> u8 {
    finish((|| {
        let key = verifier(public_key)?;
        let old_cp = open_signed(old, &key)?;
        let new_cp = open_signed(new, &key)?;
        let not_consistent = |detail: String| fail(Reason::NotConsistent, detail);
        if old_cp.origin != new_cp.origin {
            return Err(not_consistent(format!(
                "origins {:?} and {:?} differ",
                old_cp.origin, new_cp.origin
            )));
        }
        if old_cp.size > new_cp.size {
            return Err(not_consistent(format!(
                "the old size {} exceeds the new size {}",
                old_cp.size, new_cp.size
            )));
        }
        let hashes = match (proof, dir) {
            (Some(path), _) => {
                let file = ConsistencyProof::parse(&read_bounded(path)?)
                    .map_err(|e| proof_file_failure(path, &e))?;
                if file.old_size != old_cp.size || file.new_size != new_cp.size {
                    return Err(fail(
                        Reason::UnknownFormat,
                        "the proof is for other sizes than the checkpoints",
                    ));
                }
                file.hashes
            }
            (None, Some(target)) => {
                let tiles = TileStore::new(FsTiles::new(&tree_dir(target)), new_cp.size)
                    .map_err(|e| fail(Reason::UnknownFormat, e.to_string()))?;
                consistency_proof(&tiles, old_cp.size, new_cp.size)
                    .map_err(|e| fail(Reason::UnknownFormat, e.to_string()))?
            }
            (None, None) => {
                return Err(fail(Reason::BadArgument, "give --proof FILE or --dir DIR"));
            }
        };
        verify_consistency(
            old_cp.size,
            new_cp.size,
            &old_cp.root,
            &new_cp.root,
            &hashes,
        )
        .map_err(|e| not_consistent(e.to_string()))?;
        if let Some(path) = out {
            let file = ConsistencyProofFile {
                format: CONSISTENCY_FORMAT.to_owned(),
                old_size: old_cp.size,
                new_size: new_cp.size,
                hashes: hashes.iter().map(|h| encode_base64(h)).collect(),
            };
            let json = serde_json::to_string_pretty(&file)
                .map_err(|e| fail(Reason::BadArgument, e.to_string()))?;
            write_file(path, format!("{json}\n").as_bytes())?;
        }
        Ok(format!(
            "VERIFIED tree size {} extends tree size {} of {}",
            new_cp.size, old_cp.size, new_cp.origin
        ))
    })())
}

/// The arguments of `calybris witness cosign`.
#[derive(Debug)]
pub struct CosignArgs {
    /// The log's signed checkpoint.
    pub checkpoint: PathBuf,
    /// The witness's cosigner key (type 0x04 skey).
    pub key: PathBuf,
    /// The log's public key.
    pub log_key: PathBuf,
    /// The witness's state: the last checkpoint it cosigned.
    pub state: PathBuf,
    /// A consistency proof from the state's size to the checkpoint's.
    pub proof: Option<PathBuf>,
    /// Accept a first checkpoint when no state file exists.
    pub init: bool,
    /// Where to write the cosigned note (stdout otherwise).
    pub out: Option<PathBuf>,
}

/// `calybris witness cosign CHECKPOINT --key SKEY --log-key VKEY --state FILE
/// [--proof F] [--init] [--out F]`: fails closed; the state moves only after
/// the cosignature is made.
pub fn witness(args: &CosignArgs) -> u8 {
    finish((|| {
        let cosigner = signer(&args.key)?;
        let log = verifier(&args.log_key)?;
        let last = if args.state.exists() {
            let text = read_text(&args.state)?;
            Some(Checkpoint::parse(&text).map_err(|e| {
                fail(
                    Reason::UnknownFormat,
                    format!("state {}: {e}", args.state.display()),
                )
            })?)
        } else if args.init {
            None
        } else {
            return Err(fail(
                Reason::Unreadable,
                format!(
                    "no state at {} (pass --init for a first checkpoint)",
                    args.state.display()
                ),
            ));
        };
        let proof = match &args.proof {
            Some(path) => {
                ConsistencyProof::parse(&read_bounded(path)?)
                    .map_err(|e| proof_file_failure(path, &e))?
                    .hashes
            }
            None => vec![],
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let note = read_bounded(&args.checkpoint)?;
        let (cosigned, state) = witness_cosign(&note, &log, last.as_ref(), &proof, &cosigner, now)
            .map_err(|e| match e {
                calybris_tlog::WitnessError::Checkpoint(e) => {
                    fail(Reason::CheckpointSignatureInvalid, e.to_string())
                }
                other => fail(Reason::NotConsistent, other.to_string()),
            })?;
        let tmp = args.state.with_extension("tmp");
        write_file(&tmp, state.to_text().as_bytes())?;
        std::fs::rename(&tmp, &args.state)
            .map_err(|e| fail(Reason::Unreadable, format!("{}: {e}", args.state.display())))?;
        match &args.out {
            Some(path) => {
                write_file(path, cosigned.as_bytes())?;
                Ok(format!(
                    "OK cosigned tree size {} of {}",
                    state.size, state.origin
                ))
            }
            None => Ok(cosigned.trim_end().to_owned()),
        }
    })())
}

/// The transparency subcommands, flattened into the `calybris` command line.
#[derive(Debug, clap::Subcommand)]
pub enum TlogCommand {
    /// Generate an Ed25519 signed-note key pair: PREFIX.skey and PREFIX.vkey.
    #[command(
        after_help = "Example:\n  calybris keygen example.com/decisions --out ./decisions\n\nExit codes:\n  0  the key pair was written\n  2  ERROR: the files could not be written, or a bad argument"
    )]
    Keygen {
        /// The key name (for a log, its origin, e.g. example.com/decisions).
        name: String,
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX", default_value = "calybris")]
        out: PathBuf,
        /// A witness cosignature key (type 0x04) instead of a log key.
        #[arg(long)]
        witness: bool,
    },
    /// Build the tiles of a log and sign its tree head (DIR/tlog/checkpoint).
    #[command(
        after_help = "Example:\n  calybris checkpoint ./calybris-demo --key ./decisions.skey\n\nExit codes:\n  0  VERIFIED: the checkpoint, proof or cosignature was made or checks out\n  1  DIVERGED: CHECKPOINT_SIGNATURE_INVALID, INCLUSION_PROOF_INVALID or NOT_CONSISTENT\n  2  ERROR: a file could not be read or written, an unknown format, or a bad argument"
    )]
    Checkpoint {
        /// A gate directory, a segment directory or a segment file.
        dir: PathBuf,
        /// The log's signer key file (skey).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The checkpoint origin line (the key name by default).
        #[arg(long, value_name = "O")]
        origin: Option<String>,
        /// File holding the HMAC key of a keyed log.
        #[arg(long, value_name = "F")]
        key_file: Option<PathBuf>,
    },
    /// An inclusion proof of one record in the last checkpoint, as JSON.
    #[command(
        after_help = "Example:\n  calybris prove ./calybris-demo --seq 42 --out proof.json\n\nExit codes:\n  0  VERIFIED: the checkpoint, proof or cosignature was made or checks out\n  1  DIVERGED: CHECKPOINT_SIGNATURE_INVALID, INCLUSION_PROOF_INVALID or NOT_CONSISTENT\n  2  ERROR: a file could not be read or written, an unknown format, or a bad argument"
    )]
    Prove {
        /// A gate directory, a segment directory or a segment file.
        dir: PathBuf,
        /// Sequence number of the record.
        #[arg(long, value_name = "N")]
        seq: u64,
        /// Write the proof here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// File holding the HMAC key of a keyed log.
        #[arg(long, value_name = "F")]
        key_file: Option<PathBuf>,
    },
    /// Verify an inclusion proof against a signed checkpoint.
    #[command(
        after_help = "Example:\n  calybris verify-proof proof.json --checkpoint ./calybris-demo/tlog/checkpoint --public-key ./decisions.vkey\n\nExit codes:\n  0  VERIFIED: the checkpoint, proof or cosignature was made or checks out\n  1  DIVERGED: CHECKPOINT_SIGNATURE_INVALID, INCLUSION_PROOF_INVALID or NOT_CONSISTENT\n  2  ERROR: a file could not be read or written, an unknown format, or a bad argument"
    )]
    VerifyProof {
        /// The proof file (from `calybris prove`).
        proof: PathBuf,
        /// The signed checkpoint.
        #[arg(long, value_name = "FILE")]
        checkpoint: PathBuf,
        /// The log's public key file (vkey).
        #[arg(long, value_name = "KEY")]
        public_key: PathBuf,
    },
    /// Check that the NEW signed checkpoint extends the OLD one.
    #[command(
        after_help = "Example:\n  calybris consistency old.checkpoint new.checkpoint --public-key ./decisions.vkey --dir ./calybris-demo\n\nExit codes:\n  0  VERIFIED: the checkpoint, proof or cosignature was made or checks out\n  1  DIVERGED: CHECKPOINT_SIGNATURE_INVALID, INCLUSION_PROOF_INVALID or NOT_CONSISTENT\n  2  ERROR: a file could not be read or written, an unknown format, or a bad argument"
    )]
    Consistency {
        /// The older signed checkpoint.
        old: PathBuf,
        /// The newer signed checkpoint.
        new: PathBuf,
        /// The log's public key file (vkey).
        #[arg(long, value_name = "KEY")]
        public_key: PathBuf,
        /// Build the proof from this log's tiles.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Verify this proof file instead.
        #[arg(long, value_name = "FILE")]
        proof: Option<PathBuf>,
        /// Write the proof (JSON) here.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// A minimal witness.
    #[command(
        after_help = "Example:\n  calybris witness cosign new.checkpoint --key witness.skey --log-key decisions.vkey --state witness.state --init\n\nExit codes:\n  0  VERIFIED: the checkpoint, proof or cosignature was made or checks out\n  1  DIVERGED: CHECKPOINT_SIGNATURE_INVALID, INCLUSION_PROOF_INVALID or NOT_CONSISTENT\n  2  ERROR: a file could not be read or written, an unknown format, or a bad argument"
    )]
    Witness {
        /// What the witness does.
        #[command(subcommand)]
        command: WitnessCommand,
    },
}

/// `calybris witness ...`.
#[derive(Debug, clap::Subcommand)]
pub enum WitnessCommand {
    /// Cosign a checkpoint consistent with the last one cosigned.
    #[command(
        after_help = "Example:\n  calybris witness cosign new.checkpoint --key witness.skey --log-key decisions.vkey --state witness.state --proof consistency.json\n\nExit codes:\n  0  VERIFIED: the checkpoint, proof or cosignature was made or checks out\n  1  DIVERGED: CHECKPOINT_SIGNATURE_INVALID, INCLUSION_PROOF_INVALID or NOT_CONSISTENT\n  2  ERROR: a file could not be read or written, an unknown format, or a bad argument"
    )]
    Cosign {
        /// The log's signed checkpoint.
        checkpoint: PathBuf,
        /// The witness's cosigner key file (skey from `keygen --witness`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The log's public key file (vkey).
        #[arg(long, value_name = "KEY")]
        log_key: PathBuf,
        /// The witness's state file.
        #[arg(long, value_name = "FILE")]
        state: PathBuf,
        /// Consistency proof (JSON from `calybris consistency --out`).
        #[arg(long, value_name = "FILE")]
        proof: Option<PathBuf>,
        /// Accept the first checkpoint when there is no state file yet.
        #[arg(long)]
        init: bool,
        /// Write the cosigned note here instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// Runs one transparency subcommand and returns its exit code.
pub fn run(command: TlogCommand) -> u8 {
    match command {
        TlogCommand::Keygen { name, out, witness } => keygen(&name, &out, witness),
        TlogCommand::Checkpoint {
            dir,
            key,
            origin,
            key_file,
        } => checkpoint(&dir, &key, origin.as_deref(), key_file.as_deref()),
        TlogCommand::Prove {
            dir,
            seq,
            out,
            key_file,
        } => prove(&dir, seq, out.as_deref(), key_file.as_deref()),
        TlogCommand::VerifyProof {
            proof,
            checkpoint,
            public_key,
        } => verify_proof(&proof, &checkpoint, &public_key),
        TlogCommand::Consistency {
            old,
            new,
            public_key,
            dir,
            proof,
            out,
        } => consistency(
            &old,
            &new,
            &public_key,
            dir.as_deref(),
            proof.as_deref(),
            out.as_deref(),
        ),
        TlogCommand::Witness {
            command:
                WitnessCommand::Cosign {
                    checkpoint,
                    key,
                    log_key,
                    state,
                    proof,
                    init,
                    out,
                },
        } => witness(&CosignArgs {
            checkpoint,
            key,
            log_key,
            state,
            proof,
            init,
            out,
        }),
    }
}
