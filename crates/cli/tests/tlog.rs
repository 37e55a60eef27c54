//! The transparency commands end to end through the built binary, over a real
//! demo directory: keygen, checkpoint, prove, verify-proof, consistency and
//! witness cosign, then tampered inputs, each with its exit code and reason.

mod common;

use std::path::Path;

use calybris_cli::report::Reason;
use common::*;

/// Asserts a run's exit code and, for a refusal, that its line names `reason`.
fn expect(run: &Run, code: i32, reason: Option<Reason>) {
    run.assert_contract();
    assert_eq!(run.code, code, "{run:?}");
    match reason {
        None => {
            // The last line is the verdict (checkpoint prints the note first).
            let last = run.stdout.lines().last().unwrap_or_default();
            assert!(
                last.starts_with("OK ") || last.starts_with("VERIFIED "),
                "{run:?}"
            );
        }
        Some(reason) => {
            let line = if code == 2 { &run.stderr } else { &run.stdout };
            assert!(
                line.contains(&format!(" {}: ", reason.code())),
                "expected {}: {run:?}",
                reason.code()
            );
        }
    }
}

/// A base64 hash with its first character changed (so one decoded byte changes).
fn flip_first_char(hash: &str) -> String {
    match hash.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", hash.get(1..).unwrap_or_default()),
    }
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read")
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).expect("write")
}

#[test]
fn keys_checkpoints_proofs_consistency_and_a_witness_over_a_demo_log() {
    let root = temp_dir("tlog");
    let demo = root.join("demo");
    let run = calybris(&["demo", "--requests", "300", "--dir", path_str(&demo)]);
    assert_eq!(run.code, 0, "{run:?}");
    let segment = demo.join("log/00000000000000000000.cwal");
    assert!(segment.is_file(), "the demo log is {}", segment.display());

    // Keys: a log key and a witness cosignature key.
    let log_key = root.join("log");
    let witness_key = root.join("witness");
    expect(
        &calybris(&[
            "keygen",
            "example.com/decisions",
            "--out",
            path_str(&log_key),
        ]),
        0,
        None,
    );
    expect(
        &calybris(&[
            "keygen",
            "witness.example",
            "--witness",
            "--out",
            path_str(&witness_key),
        ]),
        0,
        None,
    );
    let skey = root.join("log.skey");
    let vkey = root.join("log.vkey");
    let wskey = root.join("witness.skey");
    assert!(read(&vkey).starts_with(b"example.com/decisions+"));

    // An older state of the same log: its first frames, cut at a frame
    // boundary, as a segment file of its own.
    let frames = frames(&segment, None);
    assert!(frames.len() > 100, "{} frames", frames.len());
    let (cut_at, _) = frames[frames.len() / 2];
    let old_log = root.join("old.cwal");
    write(
        &old_log,
        &read(&segment)[..usize::try_from(cut_at).expect("offset")],
    );
    expect(
        &calybris(&["checkpoint", path_str(&old_log), "--key", path_str(&skey)]),
        0,
        None,
    );
    let old_checkpoint = root.join("old.cwal.tlog/checkpoint");
    assert!(old_checkpoint.is_file());

    // The whole demo log.
    expect(
        &calybris(&["checkpoint", path_str(&demo), "--key", path_str(&skey)]),
        0,
        None,
    );
    let new_checkpoint = demo.join("tlog/checkpoint");
    let text = String::from_utf8(read(&new_checkpoint)).expect("utf-8");
    let size_line = text.lines().nth(1).expect("size line");
    assert_eq!(
        size_line,
        frames.len().to_string(),
        "the checkpoint covers every record"
    );
    // The same tree head again: the tiles are written once and agree.
    expect(
        &calybris(&["checkpoint", path_str(&demo), "--key", path_str(&skey)]),
        0,
        None,
    );

    // An inclusion proof of a record, verified against the signed checkpoint.
    let proof = root.join("proof.json");
    expect(
        &calybris(&[
            "prove",
            path_str(&demo),
            "--seq",
            "7",
            "--out",
            path_str(&proof),
        ]),
        0,
        None,
    );
    let verify = |proof: &Path, checkpoint: &Path, key: &Path| {
        calybris(&[
            "verify-proof",
            path_str(proof),
            "--checkpoint",
            path_str(checkpoint),
            "--public-key",
            path_str(key),
        ])
    };
    let run = verify(&proof, &new_checkpoint, &vkey);
    expect(&run, 0, None);
    assert!(run.stdout.contains("record 7"), "{run:?}");
    // A record beyond the tree is refused.
    let beyond = frames.len().to_string();
    let run = calybris(&["prove", path_str(&demo), "--seq", &beyond]);
    assert_eq!(run.code, 2, "{run:?}");

    // Consistency: the old checkpoint is a prefix of the new one.
    let consistency = root.join("consistency.json");
    let run = calybris(&[
        "consistency",
        path_str(&old_checkpoint),
        path_str(&new_checkpoint),
        "--public-key",
        path_str(&vkey),
        "--dir",
        path_str(&demo),
        "--out",
        path_str(&consistency),
    ]);
    expect(&run, 0, None);
    let check_consistency = |old: &Path, new: &Path, proof: &Path| {
        calybris(&[
            "consistency",
            path_str(old),
            path_str(new),
            "--public-key",
            path_str(&vkey),
            "--proof",
            path_str(proof),
        ])
    };
    expect(
        &check_consistency(&old_checkpoint, &new_checkpoint, &consistency),
        0,
        None,
    );

    // The witness: first checkpoint with --init, then the newer one with the
    // consistency proof; a rollback to the older one is refused, fail closed.
    let state = root.join("witness.state");
    let cosign = |checkpoint: &Path, proof: Option<&Path>, init: bool, out: &Path| {
        let mut args = vec![
            "witness",
            "cosign",
            path_str(checkpoint),
            "--key",
            path_str(&wskey),
            "--log-key",
            path_str(&vkey),
            "--state",
            path_str(&state),
            "--out",
            path_str(out),
        ];
        if let Some(proof) = proof {
            args.extend(["--proof", path_str(proof)]);
        }
        if init {
            args.push("--init");
        }
        calybris(&args)
    };
    let cosigned_old = root.join("old.cosigned");
    let cosigned_new = root.join("new.cosigned");
    expect(&cosign(&old_checkpoint, None, true, &cosigned_old), 0, None);
    expect(
        &cosign(&new_checkpoint, Some(&consistency), false, &cosigned_new),
        0,
        None,
    );
    let cosigned = String::from_utf8(read(&cosigned_new)).expect("utf-8");
    assert_eq!(
        cosigned
            .lines()
            .filter(|l| l.starts_with("\u{2014} "))
            .count(),
        2,
        "the log's signature and the witness's: {cosigned}"
    );
    // The cosigned note still verifies proofs against the log key.
    expect(&verify(&proof, &cosigned_new, &vkey), 0, None);
    let rollback = root.join("rollback.cosigned");
    expect(
        &cosign(&old_checkpoint, None, false, &rollback),
        1,
        Some(Reason::NotConsistent),
    );
    assert!(!rollback.exists(), "nothing is cosigned on a refusal");

    // Tampered inputs.
    // A proof hash changed: INCLUSION_PROOF_INVALID.
    let mut json: serde_json::Value =
        serde_json::from_slice(&read(&proof)).expect("the proof is JSON");
    let first = json["hashes"][0].as_str().expect("a hash").to_owned();
    let changed = flip_first_char(&first);
    json["hashes"][0] = serde_json::Value::String(changed);
    let bad_proof = root.join("bad-proof.json");
    write(&bad_proof, json.to_string().as_bytes());
    expect(
        &verify(&bad_proof, &new_checkpoint, &vkey),
        1,
        Some(Reason::InclusionProofInvalid),
    );
    // The proof of another record under this record's sequence number.
    let mut json: serde_json::Value = serde_json::from_slice(&read(&proof)).expect("JSON");
    json["sequence"] = serde_json::Value::from(8);
    write(&bad_proof, json.to_string().as_bytes());
    let run = verify(&bad_proof, &new_checkpoint, &vkey);
    assert_eq!(run.code, 1, "{run:?}");
    // A proof against the older checkpoint: another tree head.
    let run = verify(&proof, &old_checkpoint, &vkey);
    assert_ne!(run.code, 0, "{run:?}");
    // Not JSON at all: an unknown format, exit 2.
    write(&bad_proof, b"not a proof\n");
    expect(
        &verify(&bad_proof, &new_checkpoint, &vkey),
        2,
        Some(Reason::UnknownFormat),
    );

    // One byte of the checkpoint's signature changed.
    let mut note = read(&new_checkpoint);
    let at = note.len() - 10;
    note[at] = if note[at] == b'A' { b'B' } else { b'A' };
    let bad_checkpoint = root.join("bad.checkpoint");
    write(&bad_checkpoint, &note);
    expect(
        &verify(&proof, &bad_checkpoint, &vkey),
        1,
        Some(Reason::CheckpointSignatureInvalid),
    );
    // One byte of the signed text (the root) changed.
    let mut note = read(&new_checkpoint);
    let root_line = text.find('\n').expect("origin") + size_line.len() + 2;
    note[root_line] = if note[root_line] == b'A' { b'B' } else { b'A' };
    write(&bad_checkpoint, &note);
    expect(
        &verify(&proof, &bad_checkpoint, &vkey),
        1,
        Some(Reason::CheckpointSignatureInvalid),
    );
    // The right checkpoint under another key.
    expect(
        &verify(&proof, &new_checkpoint, &root.join("witness.vkey")),
        1,
        Some(Reason::CheckpointSignatureInvalid),
    );
    // The witness refuses a checkpoint the log did not sign.
    let refused = root.join("refused.cosigned");
    expect(
        &cosign(&bad_checkpoint, Some(&consistency), false, &refused),
        1,
        Some(Reason::CheckpointSignatureInvalid),
    );

    // A consistency proof with one hash changed.
    let mut json: serde_json::Value = serde_json::from_slice(&read(&consistency)).expect("JSON");
    let first = json["hashes"][0].as_str().expect("a hash").to_owned();
    let changed = flip_first_char(&first);
    json["hashes"][0] = serde_json::Value::String(changed);
    let bad_consistency = root.join("bad-consistency.json");
    write(&bad_consistency, json.to_string().as_bytes());
    expect(
        &check_consistency(&old_checkpoint, &new_checkpoint, &bad_consistency),
        1,
        Some(Reason::NotConsistent),
    );

    // Two different histories: a second demo log of other requests is not an
    // extension of the first one's older checkpoint.
    let other = root.join("other");
    let run = calybris(&["demo", "--requests", "200", "--dir", path_str(&other)]);
    assert_eq!(run.code, 0, "{run:?}");
    expect(
        &calybris(&["checkpoint", path_str(&other), "--key", path_str(&skey)]),
        0,
        None,
    );
    let run = calybris(&[
        "consistency",
        path_str(&old_checkpoint),
        path_str(&other.join("tlog/checkpoint")),
        "--public-key",
        path_str(&vkey),
        "--dir",
        path_str(&other),
    ]);
    expect(&run, 1, Some(Reason::NotConsistent));

    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn verify_names_a_forged_checkpoint_record_in_a_gate_directory() {
    use calybris::gate::{CheckpointConfig, Gate, GateConfig, GateRecord, LOG_DIR};
    use calybris::wal::storage::FsDirectory;
    use calybris::wal::{DurableConfig, DurableWal, SegmentedReader};
    use std::sync::Arc;

    let root = temp_dir("tlog-gate");
    let dir = root.join("gate");
    let signer =
        calybris_tlog::Ed25519Signer::from_seed("example.com/gate", &[3; 32]).expect("signer");
    let gate = Gate::open(
        GateConfig::new(&dir, policy(1))
            .tenant("acme", 1_000_000)
            .clock(|| 1_700_000_000_000)
            .checkpoints(
                CheckpointConfig::new("example.com/gate", Arc::new(signer)).every_records(4),
            ),
    )
    .expect("open the gate");
    for i in 0..8 {
        let admission = gate.decide("acme", request(i)).expect("decide");
        gate.release(admission).expect("release");
    }
    gate.close().expect("close");
    let run = calybris(&["verify", path_str(&dir)]);
    assert_eq!(run.code, 0, "{run:?}");

    // A well-chained checkpoint record whose root is not the tree before it.
    let mut reader =
        SegmentedReader::<GateRecord>::open(&dir.join(LOG_DIR), None, None).expect("reader");
    let mut last_checkpoint = None;
    let mut records = 0u64;
    while let Some(entry) = reader.next_entry().expect("entry") {
        if let GateRecord::Checkpoint(checkpoint) = entry.record {
            last_checkpoint = Some(checkpoint);
        }
        records += 1;
    }
    let mut forged = last_checkpoint.expect("the gate took checkpoints");
    forged.tree_size = records;
    let wal =
        DurableWal::<GateRecord, FsDirectory>::open(&dir.join(LOG_DIR), DurableConfig::default())
            .expect("open the log");
    wal.append_durable(&GateRecord::Checkpoint(forged))
        .expect("append");
    wal.close().expect("close");
    let run = calybris(&["verify", path_str(&dir)]);
    run.assert_contract();
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stdout.contains(Reason::NotConsistent.code()), "{run:?}");
    let _ = std::fs::remove_dir_all(&root);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A second `calybris checkpoint` resumes from the tiles and the link of the
/// last one: it reads only the link's segment and the records after it (a
/// damaged early segment is not read), gives the root a full build gives,
/// and refuses a link that is not the log's.
#[test]
fn a_later_checkpoint_reads_only_the_suffix_from_the_link() {
    use calybris::gate::{Gate, GateConfig, LOG_DIR};
    let root = temp_dir("tlog-resume-cli");
    let dir = root.join("gate");
    let open = |dir: &Path| {
        Gate::open(
            GateConfig::new(dir, policy(1))
                .tenant("acme", 1_000_000_000)
                .clock(|| 1_700_000_000_000)
                .segment_limit_bytes(4 * 1024),
        )
        .expect("open the gate")
    };
    let run_decisions = |dir: &Path, range: std::ops::Range<u64>| {
        let gate = open(dir);
        for i in range {
            let admission = gate.decide("acme", request(i)).expect("decide");
            gate.release(admission).expect("release");
        }
        gate.close().expect("close");
    };
    run_decisions(&dir, 0..150);
    expect(
        &calybris(&[
            "keygen",
            "example.com/gate",
            "--out",
            path_str(&root.join("k")),
        ]),
        0,
        None,
    );
    let skey = root.join("k.skey");
    expect(
        &calybris(&["checkpoint", path_str(&dir), "--key", path_str(&skey)]),
        0,
        None,
    );
    let link = dir.join("tlog/checkpoint.link");
    let first_link = String::from_utf8(read(&link)).expect("utf-8");
    run_decisions(&dir, 150..200);
    let mut segments: Vec<_> = std::fs::read_dir(dir.join(LOG_DIR))
        .expect("segments")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwal"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 3, "{} segments", segments.len());

    // A fresh copy (no tiles) for the full build to compare with.
    let fresh = root.join("fresh");
    copy_dir(&dir, &fresh);
    std::fs::remove_dir_all(fresh.join("tlog")).expect("rm tiles");
    // One byte of the first segment damaged: the resumed build never reads it.
    let mut bytes = read(&segments[0]);
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    write(&segments[0], &bytes);

    let resumed = calybris(&["checkpoint", path_str(&dir), "--key", path_str(&skey)]);
    expect(&resumed, 0, None);
    let full = calybris(&["checkpoint", path_str(&fresh), "--key", path_str(&skey)]);
    expect(&full, 0, None);
    let head = |path: &Path| {
        let text = String::from_utf8(read(path)).expect("utf-8");
        text.lines().take(3).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(
        head(&dir.join("tlog/checkpoint")),
        head(&fresh.join("tlog/checkpoint")),
        "the resumed tree head is the full build's"
    );
    assert_ne!(String::from_utf8(read(&link)).expect("utf-8"), first_link);
    // The damage is there: a whole-log verification finds it.
    assert_ne!(calybris(&["verify", path_str(&dir)]).code, 0);

    // A link that is not the log's (its hash changed) is refused (on the
    // undamaged copy, grown).
    run_decisions(&fresh, 200..210);
    let link = fresh.join("tlog/checkpoint.link");
    let text = String::from_utf8(read(&link)).expect("utf-8");
    let (sequence, hash) = text.trim().split_once(':').expect("SEQ:HEX");
    let flipped = match hash.strip_prefix('0') {
        Some(rest) => format!("1{rest}"),
        None => format!("0{}", hash.get(1..).unwrap_or_default()),
    };
    write(&link, format!("{sequence}:{flipped}\n").as_bytes());
    let refused = calybris(&["checkpoint", path_str(&fresh), "--key", path_str(&skey)]);
    refused.assert_contract();
    assert_ne!(refused.code, 0, "{refused:?}");
    assert!(
        refused.stdout.contains(Reason::NotConsistent.code())
            || refused.stderr.contains(Reason::NotConsistent.code()),
        "{refused:?}"
    );
}
