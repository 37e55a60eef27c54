//! `calybris verify`: every outcome word, reason code and exit code of the
//! contract in docs/CLI.md, on real files, through the built binary.

mod common;

use calybris::digest::{decision_digest, input_digest};
use calybris::wal::{
    AuditRecord, DecisionMeta, DecisionRecord, DurableAuditWal, DurableConfig, PolicyRecord,
    WalWriter,
};
use common::*;

const DECISIONS: u64 = 12;

fn assert_diverged(json: &serde_json::Value, reason: &str, sequence: u64, offset: u64) {
    assert_eq!(json["outcome"], "DIVERGED", "{json}");
    assert_eq!(json["reason"], reason, "{json}");
    assert_eq!(json["sequence"], sequence, "{json}");
    assert_eq!(json["offset_bytes"], offset, "{json}");
}

#[test]
fn a_good_log_verifies_with_its_anchor() {
    let dir = temp_dir("good");
    let log = dir.join("audit.cwal");
    let anchor = write_log(&log, None, DECISIONS);
    let anchor_text = calybris_cli::report::anchor_text(&anchor);

    let run = calybris(&["verify", path_str(&log)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("VERIFIED "), "{run:?}");
    assert!(run.stdout.contains(&anchor_text), "{run:?}");
    assert!(run.stderr.is_empty());

    let (run, json) = verify_json(&log, &["--anchor", &anchor_text]);
    assert_eq!(run.code, 0);
    assert_eq!(json["outcome"], "VERIFIED");
    assert_eq!(json["reason"], serde_json::Value::Null);
    assert_eq!(json["records"], DECISIONS + 1);
    assert_eq!(json["policies"], 1);
    assert_eq!(json["decisions"], DECISIONS);
    assert_eq!(json["anchor"], anchor_text.as_str());
    assert_eq!(json["anchored"], true);
}

#[test]
fn a_flipped_byte_in_the_middle_breaks_the_chain_at_that_record() {
    let dir = temp_dir("flip");
    let log = dir.join("audit.cwal");
    write_log(&log, None, DECISIONS);
    let frames = frames(&log, None);
    let (offset, len) = frames[3];
    flip_byte(&log, offset + len / 2);

    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 1);
    assert_diverged(&json, "CHAIN_BROKEN", 3, offset);
    assert_eq!(json["records"], 3);

    let run = calybris(&["verify", path_str(&log)]);
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.starts_with(&format!(
            "DIVERGED CHAIN_BROKEN sequence=3 offset={offset} "
        )),
        "{run:?}"
    );
}

#[test]
fn a_removed_record_breaks_the_chain_where_it_was() {
    let dir = temp_dir("removed");
    let log = dir.join("audit.cwal");
    write_log(&log, None, DECISIONS);
    let (offset, len) = frames(&log, None)[5];
    cut(&log, offset, offset + len);

    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 1);
    assert_diverged(&json, "CHAIN_BROKEN", 5, offset);
}

#[test]
fn a_cleanly_cut_suffix_is_caught_only_with_an_anchor() {
    let dir = temp_dir("suffix");
    let log = dir.join("audit.cwal");
    let anchor = write_log(&log, None, DECISIONS);
    let frames = frames(&log, None);
    let (last_offset, _) = frames[frames.len() - 1];
    truncate(&log, last_offset);

    // Without an anchor, a log cut at a frame boundary is a shorter, valid log.
    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 0);
    assert_eq!(json["records"], DECISIONS);

    let anchor_text = calybris_cli::report::anchor_text(&anchor);
    let (run, json) = verify_json(&log, &["--anchor", &anchor_text]);
    assert_eq!(run.code, 1);
    assert_diverged(&json, "SUFFIX_TRUNCATED", DECISIONS, last_offset);
}

#[test]
fn a_log_cut_inside_a_frame_has_a_torn_tail() {
    let dir = temp_dir("torn");
    let log = dir.join("audit.cwal");
    write_log(&log, None, DECISIONS);
    let frames = frames(&log, None);
    let (last_offset, len) = frames[frames.len() - 1];
    truncate(&log, last_offset + len - 7);

    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 1);
    assert_diverged(&json, "TORN_TAIL", DECISIONS, last_offset);
}

#[test]
fn another_history_at_the_anchor_is_an_anchor_mismatch() {
    let dir = temp_dir("anchor-mismatch");
    let log = dir.join("audit.cwal");
    write_log(&log, None, DECISIONS);
    let other = dir.join("other.cwal");
    let other_anchor = write_log(&other, Some(key()), DECISIONS);
    let text = calybris_cli::report::anchor_text(&other_anchor);

    let (run, json) = verify_json(&log, &["--anchor", &text]);
    assert_eq!(run.code, 1);
    let (last_offset, _) = frames(&log, None)[DECISIONS as usize];
    assert_diverged(&json, "ANCHOR_MISMATCH", DECISIONS, last_offset);
}

#[test]
fn a_malformed_anchor_is_a_bad_argument() {
    let dir = temp_dir("bad-anchor");
    let log = dir.join("audit.cwal");
    write_log(&log, None, 2);
    for text in ["12", "x:ab", "3:not-hex"] {
        let (run, json) = verify_json(&log, &["--anchor", text]);
        assert_eq!(run.code, 2);
        assert_eq!(json["outcome"], "ERROR");
        assert_eq!(json["reason"], "BAD_ARGUMENT");
        assert!(run.stderr.starts_with("ERROR BAD_ARGUMENT"), "{run:?}");
    }
}

#[test]
fn garbage_empty_and_missing_files_are_errors() {
    let dir = temp_dir("garbage");
    let garbage = dir.join("garbage.bin");
    std::fs::write(
        &garbage,
        b"this is not a log at all, just some text\n".repeat(20),
    )
    .expect("write");
    let empty = dir.join("empty.cwal");
    std::fs::write(&empty, b"").expect("write");

    for (path, reason) in [
        (garbage.clone(), "UNKNOWN_FORMAT"),
        (empty, "UNKNOWN_FORMAT"),
        (dir.join("missing.cwal"), "UNREADABLE"),
        (dir.to_path_buf(), "UNKNOWN_FORMAT"),
    ] {
        let (run, json) = verify_json(&path, &[]);
        assert_eq!(run.code, 2, "{path:?}");
        assert_eq!(json["outcome"], "ERROR");
        assert_eq!(json["reason"], reason, "{path:?}");
        let run = calybris(&["verify", path_str(&path)]);
        assert_eq!(run.code, 2);
        assert!(run.stdout.is_empty(), "{run:?}");
        assert!(
            run.stderr.starts_with(&format!("ERROR {reason}")),
            "{run:?}"
        );
    }
}

#[test]
fn keys_are_checked_before_anything_is_read() {
    let dir = temp_dir("keys");
    let keyed = dir.join("keyed.cwal");
    write_log(&keyed, Some(key()), 3);
    let unkeyed = dir.join("unkeyed.cwal");
    write_log(&unkeyed, None, 3);
    let right = dir.join("right.key");
    std::fs::write(&right, KEY).expect("write");
    let wrong = dir.join("wrong.key");
    std::fs::write(&wrong, [9u8; 32]).expect("write");
    let short = dir.join("short.key");
    std::fs::write(&short, [9u8; 31]).expect("write");
    let arg = |p: &std::path::Path| p.to_str().expect("utf-8").to_owned();

    let (run, json) = verify_json(&keyed, &["--key-file", &arg(&right)]);
    assert_eq!((run.code, json["outcome"].as_str()), (0, Some("VERIFIED")));
    assert_eq!(json["keyed"], true);

    for (log, extra) in [
        (&keyed, vec!["--key-file".to_owned(), arg(&wrong)]),
        (&keyed, vec![]),
        (&unkeyed, vec!["--key-file".to_owned(), arg(&right)]),
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (run, json) = verify_json(log, &extra);
        assert_eq!(run.code, 2, "{run:?}");
        assert_eq!(json["reason"], "WRONG_KEY");
    }

    let (run, json) = verify_json(&keyed, &["--key-file", &arg(&short)]);
    assert_eq!(
        (run.code, json["reason"].as_str()),
        (2, Some("BAD_ARGUMENT"))
    );
    let (run, json) = verify_json(&keyed, &["--key-file", &arg(&dir.join("nope.key"))]);
    assert_eq!((run.code, json["reason"].as_str()), (2, Some("UNREADABLE")));
}

/// Writes a log whose chain is valid but whose records are forged, as an
/// attacker who can rewrite an unkeyed log could: the replay must catch it.
fn forged_log(path: &std::path::Path, forge: impl FnOnce(&mut Vec<AuditRecord>)) {
    let policy = policy(1);
    let mut records = vec![AuditRecord::Policy(PolicyRecord {
        policy_digest: *policy.digest(),
        policy: policy.clone(),
    })];
    for i in 0..4 {
        let input = request(i);
        let decision = policy.prescribe(input);
        let record = DecisionRecord::verified(&policy, input, &decision, DecisionMeta::default())
            .expect("replays");
        records.push(AuditRecord::Decision(record));
    }
    forge(&mut records);
    let mut writer = WalWriter::<AuditRecord>::create(path, None).expect("create");
    for record in &records {
        writer.append(record).expect("append");
    }
    writer.sync().expect("sync");
}

fn decision_mut(records: &mut [AuditRecord], at: usize) -> &mut DecisionRecord {
    match &mut records[at] {
        AuditRecord::Decision(record) => record,
        AuditRecord::Policy(_) => panic!("record {at} is a policy"),
    }
}

#[test]
fn a_swapped_policy_is_a_policy_digest_mismatch() {
    let dir = temp_dir("swapped-policy");
    let log = dir.join("audit.cwal");
    forged_log(&log, |records| {
        records[0] = AuditRecord::Policy(PolicyRecord {
            policy_digest: *policy(1).digest(),
            policy: policy(2),
        });
    });
    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 1);
    assert_diverged(
        &json,
        "POLICY_DIGEST_MISMATCH",
        0,
        calybris::wal::format::HEADER_LEN_BYTES as u64,
    );
}

#[test]
fn an_edited_decision_is_a_decision_mismatch_naming_the_field() {
    let dir = temp_dir("edited-decision");
    let log = dir.join("audit.cwal");
    forged_log(&log, |records| {
        let record = decision_mut(records, 2);
        record.decision.estimated_cost_microunits += 1;
        record.decision_digest = decision_digest(&record.decision);
    });
    let offset = frames(&log, None)[2].0;
    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 1);
    assert_diverged(&json, "DECISION_MISMATCH", 2, offset);
    assert_eq!(json["field"], "estimated_cost_microunits");
    let run = calybris(&["verify", path_str(&log)]);
    assert!(
        run.stdout
            .starts_with("DIVERGED DECISION_MISMATCH field=estimated_cost_microunits sequence=2"),
        "{run:?}"
    );
}

#[test]
fn an_edited_request_is_an_input_digest_mismatch() {
    let dir = temp_dir("edited-input");
    let log = dir.join("audit.cwal");
    forged_log(&log, |records| {
        decision_mut(records, 3).input.input_tokens += 1;
    });
    let offset = frames(&log, None)[3].0;
    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 1);
    assert_diverged(&json, "INPUT_DIGEST_MISMATCH", 3, offset);
}

#[test]
fn a_replayed_request_with_its_digest_recomputed_still_fails_to_replay() {
    let dir = temp_dir("edited-input-digest");
    let log = dir.join("audit.cwal");
    forged_log(&log, |records| {
        let record = decision_mut(records, 1);
        record.input.business_value_microunits *= 3;
        record.input_digest = input_digest(&record.input);
    });
    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 1);
    assert_eq!(json["reason"], "DECISION_MISMATCH");
    assert_eq!(json["sequence"], 1);
}

#[test]
fn an_edited_decision_digest_is_a_decision_digest_mismatch() {
    let dir = temp_dir("edited-digest");
    let log = dir.join("audit.cwal");
    forged_log(&log, |records| {
        decision_mut(records, 4).decision_digest[0] ^= 1;
    });
    let offset = frames(&log, None)[4].0;
    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 1);
    assert_diverged(&json, "DECISION_DIGEST_MISMATCH", 4, offset);
}

#[test]
fn a_decision_without_its_policy_is_policy_missing() {
    let dir = temp_dir("policy-missing");
    let log = dir.join("audit.cwal");
    forged_log(&log, |records| {
        records.remove(0);
    });
    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 2);
    assert_eq!(json["outcome"], "ERROR");
    assert_eq!(json["reason"], "POLICY_MISSING");
    assert_eq!(json["sequence"], 0);
}

#[test]
fn a_log_of_other_records_is_an_unknown_format() {
    let dir = temp_dir("other-records");
    let log = dir.join("events.cwal");
    let mut writer = WalWriter::<(u64, String)>::create(&log, None).expect("create");
    writer.append(&(1, "reserve".to_owned())).expect("append");
    writer.sync().expect("sync");
    drop(writer);
    let (run, json) = verify_json(&log, &[]);
    assert_eq!(run.code, 2);
    assert_eq!(json["reason"], "UNKNOWN_FORMAT");
    assert_eq!(json["sequence"], 0);
}

#[test]
fn a_segment_directory_verifies_and_names_the_segment_at_fault() {
    let dir = temp_dir("segments");
    let log_dir = dir.join("audit");
    let config = DurableConfig {
        segment_limit_bytes: 4 * 1024,
        ..DurableConfig::default()
    };
    let wal = DurableAuditWal::open(&log_dir, config).expect("open");
    let policy = policy(1);
    for i in 0..60 {
        let input = request(i);
        let decision = policy.prescribe(input);
        // Waiting on each record makes each its own batch, so the log rotates
        // at the size limit between records.
        wal.append_verified(&policy, input, &decision, DecisionMeta::default())
            .expect("append")
            .wait()
            .expect("durable");
    }
    wal.close().expect("close");

    let (run, json) = verify_json(&log_dir, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(json["decisions"], 60);

    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .expect("list")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cwal"))
        .collect();
    segments.sort();
    assert!(segments.len() >= 2, "{segments:?}");
    let victim = &segments[1];
    let (offset, len) = frames(victim, None)[1];
    flip_byte(victim, offset + len / 2);
    let (run, json) = verify_json(&log_dir, &[]);
    assert_eq!(run.code, 1);
    assert_eq!(json["reason"], "CHAIN_BROKEN");
    assert_eq!(json["offset_bytes"], offset);
    assert_eq!(json["segment"], path_str(victim));
}

#[test]
fn no_byte_flip_or_cut_anywhere_makes_it_panic_or_pass() {
    let dir = temp_dir("sweep");
    let good = dir.join("good.cwal");
    write_log(&good, None, 4);
    let bytes = std::fs::read(&good).expect("read");
    let victim = dir.join("victim.cwal");
    // A deterministic sweep: every 7th byte flipped, and a few cuts.
    let positions: Vec<usize> = (0..bytes.len()).step_by(7).collect();
    for &at in &positions {
        let mut copy = bytes.clone();
        copy[at] ^= 0x01;
        std::fs::write(&victim, &copy).expect("write");
        let (run, json) = verify_json(&victim, &[]);
        assert_ne!(run.code, 0, "a flip at byte {at} verified");
        assert_ne!(json["outcome"], "VERIFIED");
    }
    for len in [1, 50, 95, 97, bytes.len() - 1] {
        std::fs::write(&victim, &bytes[..len]).expect("write");
        let (run, _) = verify_json(&victim, &[]);
        assert_ne!(run.code, 0, "a cut to {len} bytes verified");
    }
    // A cut right after the header leaves a valid empty log: only an anchor
    // tells it from the original (see docs/CLI.md).
    let header = calybris::wal::format::HEADER_LEN_BYTES;
    std::fs::write(&victim, &bytes[..header]).expect("write");
    let (run, json) = verify_json(&victim, &[]);
    assert_eq!((run.code, json["records"].as_u64()), (0, Some(0)));
}
