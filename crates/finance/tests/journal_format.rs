//! The journal's record encoding does not change by accident.
//!
//! Journal records are postcard-encoded inside WAL frames, so their bytes are
//! part of the on-disk format: `tests/data/journal_records.txt` pins one
//! record of each kind, and every pinned encoding must decode back to its
//! record. It changes only on purpose:
//! `CALYBRIS_REGENERATE_GOLDEN=1 cargo test -p calybris-finance --test journal_format`.

use calybris_finance::JournalRecord;

const GOLDEN_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/journal_records.txt"
);

fn records() -> Vec<(&'static str, JournalRecord)> {
    vec![
        (
            "tenant-created",
            JournalRecord::TenantCreated {
                tenant_id: "acme".into(),
                initial_microcents: 100_000_000,
            },
        ),
        (
            "topped-up",
            JournalRecord::ToppedUp {
                tenant_id: "acme".into(),
                amount_microcents: i64::MAX,
            },
        ),
        (
            "reserved",
            JournalRecord::Reserved {
                reservation: 7,
                tenant_id: "été".into(),
                amount_microcents: 1,
            },
        ),
        (
            "committed",
            JournalRecord::Committed {
                reservation: u64::MAX,
                actual_microcents: 0,
            },
        ),
        ("released", JournalRecord::Released { reservation: 300 }),
    ]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn journal_record_bytes_are_pinned_and_decode_back() {
    let computed: String = records()
        .iter()
        .map(|(name, record)| {
            let bytes = postcard::to_stdvec(record).expect("records encode");
            format!("{name} {}\n", hex(&bytes))
        })
        .collect();
    if std::env::var_os("CALYBRIS_REGENERATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN_PATH, &computed).expect("golden file is writable");
    }
    let pinned = std::fs::read_to_string(GOLDEN_PATH).expect("golden file exists");
    assert_eq!(
        pinned, computed,
        "journal record encoding changed; see the module docs"
    );
    for ((name, record), line) in records().iter().zip(pinned.lines()) {
        let encoded = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .expect("one line per record, in order");
        let bytes: Vec<u8> = (0..encoded.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&encoded[i..i + 2], 16).expect("hex"))
            .collect();
        let decoded: JournalRecord = postcard::from_bytes(&bytes).expect("pinned bytes decode");
        assert_eq!(&decoded, record, "{name}");
    }
}
