//! Signed notes, checkpoints, cosignatures and the witness, including a seeded
//! mutation of every byte of a signed checkpoint.

use calybris_tlog::note::{ALG_COSIGNATURE_V1, MAX_NOTE_BYTES, key_id};
use calybris_tlog::{
    Checkpoint, CheckpointError, Ed25519Signer, MemoryTree, NoteError, Verifier, WitnessError,
    consistency_proof, leaf_hash, open_checkpoint, open_note, sign_note, witness_cosign,
};

fn signer(name: &str, byte: u8) -> Ed25519Signer {
    Ed25519Signer::from_seed(name, &[byte; 32]).expect("signer")
}

fn checkpoint(size: u64) -> (Checkpoint, MemoryTree) {
    let mut tree = MemoryTree::new();
    for i in 0..size {
        tree.append(leaf_hash(&i.to_be_bytes())).expect("append");
    }
    (
        Checkpoint {
            origin: "calybris.example/log".into(),
            size,
            root: tree.root(),
            extensions: vec![],
        },
        tree,
    )
}

#[test]
fn keys_round_trip_and_key_ids_follow_c2sp() {
    let s = signer("calybris.example/log", 1);
    let v = Verifier::from_vkey(&s.vkey()).expect("vkey");
    assert_eq!(v, s.verifier());
    assert_eq!(
        Ed25519Signer::from_skey(&s.skey()).expect("skey").vkey(),
        s.vkey()
    );
    let public = base64_decode(s.vkey().rsplit('+').next().expect("key"));
    assert_eq!(public[0], 0x01);
    assert_eq!(
        v.key_id(),
        key_id("calybris.example/log", 0x01, &public[1..])
    );
    let vkey = s.vkey();
    // Wrong name, wrong id, wrong algorithm byte, bad base64, extra field.
    let (name_id, key) = vkey.rsplit_once('+').expect("fields");
    let (_, id) = name_id.split_once('+').expect("fields");
    assert_eq!(
        Verifier::from_vkey(&format!("other.example+{id}+{key}")),
        Err(NoteError::KeyIdMismatch)
    );
    assert_eq!(
        Verifier::from_vkey(&format!("calybris.example/log+00000000+{key}")),
        Err(NoteError::KeyIdMismatch)
    );
    let mut wrong_alg = public.clone();
    wrong_alg[0] = 0x02;
    assert_eq!(
        Verifier::from_vkey(&format!(
            "{name_id}+{}",
            calybris_tlog::note::encode_base64(&wrong_alg)
        )),
        Err(NoteError::WrongAlgorithm { found: 2 })
    );
    assert!(matches!(
        Verifier::from_vkey(&format!("{vkey}x")),
        Err(NoteError::Base64 { .. })
    ));
    assert!(matches!(
        Verifier::from_vkey(&format!("{vkey}+x")),
        Err(NoteError::Base64 { .. })
    ));
    assert_eq!(
        Verifier::from_vkey(&format!("a b+{id}+{key}")),
        Err(NoteError::BadName)
    );
    assert!(Ed25519Signer::from_seed("", &[0; 32]).is_err());
}

fn base64_decode(text: &str) -> Vec<u8> {
    calybris_tlog::note::decode_canonical(text, "test").expect("base64")
}

#[test]
fn notes_with_several_signatures() {
    let (cp, _) = checkpoint(10);
    let log = signer("calybris.example/log", 1);
    let other = signer("other.example/log", 2);
    let note = cp.sign(&[&log, &other]).expect("sign");
    let (opened, verified) = open_checkpoint(note.as_bytes(), &[log.verifier()]).expect("open");
    assert_eq!(opened, cp);
    assert_eq!(verified.signatures.len(), 2);
    assert_eq!(verified.verified_by.len(), 1, "the unknown key is ignored");
    // Only an unknown key: refused.
    assert_eq!(
        open_note(note.as_bytes(), &[signer("x.example", 3).verifier()]),
        Err(NoteError::NoKnownSignature)
    );
    // The same key twice: refused.
    let line = note.lines().nth(4).expect("first signature line");
    let doubled = format!("{note}{line}\n");
    assert!(matches!(
        open_note(doubled.as_bytes(), &[log.verifier()]),
        Err(NoteError::DuplicateSignature { .. })
    ));
    // A known key with a bad signature: refused even if another verifies.
    let forged = format!(
        "{}\n\u{2014} calybris.example/log {}\n",
        cp.to_text(),
        bad_signature(&log)
    );
    assert!(matches!(
        open_note(forged.as_bytes(), &[log.verifier()]),
        Err(NoteError::SignatureInvalid { .. })
    ));
    // Oversized, unsigned, control characters.
    let big = vec![b'a'; MAX_NOTE_BYTES + 1];
    assert!(matches!(
        open_note(&big, &[log.verifier()]),
        Err(NoteError::Oversized { .. })
    ));
    assert_eq!(
        open_note(cp.to_text().as_bytes(), &[log.verifier()]),
        Err(NoteError::Unsigned)
    );
    assert!(matches!(
        sign_note("a\u{7}\n", &[&log]),
        Err(NoteError::Malformed { .. })
    ));
}

fn bad_signature(signer: &Ed25519Signer) -> String {
    let mut bytes = signer.verifier().key_id().to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0u8; 64]);
    calybris_tlog::note::encode_base64(&bytes)
}

#[test]
fn checkpoint_text_is_strict() {
    let (cp, _) = checkpoint(3);
    let text = cp.to_text();
    assert_eq!(Checkpoint::parse(&text), Ok(cp.clone()));
    let root = text.lines().nth(2).expect("root");
    for (bad, want) in [
        (format!("o\n03\n{root}\n"), CheckpointError::BadSize),
        (format!("o\n-1\n{root}\n"), CheckpointError::BadSize),
        (
            format!("o\n9223372036854775808\n{root}\n"),
            CheckpointError::BadSize,
        ),
        (
            format!("o\n3\n{}\n", &root[..root.len() - 1]),
            CheckpointError::BadRoot,
        ),
        ("o\n3\nAAAA\n".to_owned(), CheckpointError::BadRoot),
    ] {
        assert_eq!(Checkpoint::parse(&bad), Err(want), "{bad:?}");
    }
    assert!(matches!(
        Checkpoint::parse(&format!("\n3\n{root}\n")),
        Err(CheckpointError::Malformed { .. })
    ));
    assert!(matches!(
        Checkpoint::parse(&format!("o\n3\n{root}")),
        Err(CheckpointError::Malformed { .. })
    ));
    assert!(matches!(
        Checkpoint::parse(&format!("o\n3\n{root}\n\nx\n")),
        Err(CheckpointError::Malformed { .. })
    ));
    let with_ext = Checkpoint {
        extensions: vec!["ext one".into()],
        ..cp
    };
    assert_eq!(Checkpoint::parse(&with_ext.to_text()), Ok(with_ext));
}

#[test]
fn witness_cosigns_only_consistent_checkpoints() {
    let log = signer("calybris.example/log", 1);
    let witness =
        Ed25519Signer::cosigner_from_seed("witness.example/w1", &[9; 32]).expect("cosigner");
    assert_eq!(witness.alg(), ALG_COSIGNATURE_V1);
    let (cp5, _) = checkpoint(5);
    let (cp9, tree9) = checkpoint(9);
    let note5 = cp5.sign(&[&log]).expect("sign");
    let (cosigned, state) = witness_cosign(
        note5.as_bytes(),
        &log.verifier(),
        None,
        &[],
        &witness,
        1_700_000_000,
    )
    .expect("first");
    assert_eq!(state, cp5);
    let opened =
        open_note(cosigned.as_bytes(), &[log.verifier(), witness.verifier()]).expect("both verify");
    assert_eq!(opened.verified_by.len(), 2);
    assert_eq!(opened.verified_by[1].1, Some(1_700_000_000));
    let note9 = cp9.sign(&[&log]).expect("sign");
    let proof = consistency_proof(&tree9, 5, 9).expect("proof");
    let (_, state) = witness_cosign(
        note9.as_bytes(),
        &log.verifier(),
        Some(&state),
        &proof,
        &witness,
        1_700_000_001,
    )
    .expect("consistent");
    // Going back, or a forked tree, is refused.
    assert!(matches!(
        witness_cosign(
            note5.as_bytes(),
            &log.verifier(),
            Some(&state),
            &[],
            &witness,
            1
        ),
        Err(WitnessError::NotConsistent(_))
    ));
    let fork = Checkpoint {
        root: [0; 32],
        ..cp9.clone()
    };
    let fork_note = fork.sign(&[&log]).expect("sign");
    assert!(matches!(
        witness_cosign(
            fork_note.as_bytes(),
            &log.verifier(),
            Some(&cp5),
            &proof,
            &witness,
            1
        ),
        Err(WitnessError::NotConsistent(_))
    ));
    // A note the log did not sign is refused.
    let stranger = cp9
        .sign(&[&signer("calybris.example/log", 2)])
        .expect("sign");
    assert!(matches!(
        witness_cosign(stranger.as_bytes(), &log.verifier(), None, &[], &witness, 1),
        Err(WitnessError::Checkpoint(_))
    ));
}

#[test]
fn mutating_any_byte_of_a_signed_checkpoint_is_rejected() {
    let seed: u64 = std::env::var("TLOG_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7106);
    // The workspace's seeded generator (SplitMix64): a byte of each draw.
    let mut rng = calybris_workload::SplitMix64::new(seed);
    let mut next = || rng.next_u64().to_le_bytes()[0];
    let log = signer("calybris.example/log", 1);
    let (cp, _) = checkpoint(1234);
    let note = cp.sign(&[&log]).expect("sign").into_bytes();
    for i in 0..note.len() {
        let mut bad = note.clone();
        let flip = next() | 1;
        bad[i] ^= flip;
        let result = open_checkpoint(&bad, &[log.verifier()]);
        assert!(
            result.is_err(),
            "seed {seed}: flipping byte {i} by {flip:#x} was accepted"
        );
        // Truncation at every length is refused too.
        assert!(
            open_checkpoint(&note[..i], &[log.verifier()]).is_err(),
            "seed {seed}: truncated to {i}"
        );
    }
}
