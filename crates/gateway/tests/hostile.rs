//! Hostile input over real loopback HTTP: seeded mutations of valid chat bodies, raw
//! HTTP/1.1 framing attacks written byte by byte to the socket, and request headers a
//! client controls. Whatever arrives, the gateway answers with a clear status (an
//! OpenAI-style error body where it answers at the HTTP layer), never a 5xx for the
//! client's bytes, keeps serving, and leaves no reservation open.

mod common;

use common::{Harness, KEY, Options, Upstream, body};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The seed of the mutation run (printed on failure by every assertion below).
const SEED: u64 = 0xBAD1_4F07_2026_1203;
/// Mutated bodies sent.
const MUTATIONS: u64 = 400;
/// The body limit of the harness under test.
const MAX_BODY: usize = 4_096;

/// SplitMix64: enough for choosing mutations, reproducible from [`SEED`].
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).expect("fits")
    }
}

/// Fragments that break JSON or its types in ways a parser must survive.
const FRAGMENTS: &[&str] = &[
    "null",
    "1e99999",
    "-0",
    "18446744073709551616",
    "\"\\ud800\"",
    "\"\\u0000\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "\"stream\": \"yes\"",
    "\"max_tokens\": 4294967296",
    "\"model\": \"\"",
    "\"messages\": [{}]",
    "\"messages\": [{\"role\": \"user\"}]",
    "\"content\": [{\"type\": \"image_url\"}]",
    "\"role\": \"system\\r\\nX-Injected: 1\"",
    "\u{feff}",
    "\u{202e}",
];

/// One mutation of a valid body: bytes flipped, cut, duplicated, or a fragment
/// spliced in.
fn mutate(rng: &mut Rng, valid: &[u8]) -> Vec<u8> {
    let mut out = valid.to_vec();
    for _ in 0..=rng.below(3) {
        match rng.below(6) {
            0 if !out.is_empty() => {
                let at = rng.below(out.len());
                out[at] ^= 1 << rng.below(8);
            }
            1 if !out.is_empty() => {
                let at = rng.below(out.len());
                out.truncate(at);
            }
            2 if !out.is_empty() => {
                let at = rng.below(out.len());
                let fragment = FRAGMENTS[rng.below(FRAGMENTS.len())].as_bytes();
                out.splice(at..at, fragment.iter().copied());
            }
            3 if !out.is_empty() => {
                let from = rng.below(out.len());
                let to = (from + rng.below(64)).min(out.len());
                let copy = out[from..to].to_vec();
                out.splice(to..to, copy);
            }
            4 => out.push(u8::try_from(rng.below(256)).expect("a byte")),
            _ => {
                if !out.is_empty() {
                    let at = rng.below(out.len());
                    out.remove(at);
                }
            }
        }
    }
    out
}

fn verified(dir: &std::path::Path) -> calybris_gate::GateReport {
    calybris_gate::verify_dir(dir, &calybris_gate::VerifyOptions::default())
        .unwrap_or_else(|error| panic!("the log verifies: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_bodies_get_a_clear_answer_and_leave_nothing_open() {
    let harness = Harness::start(
        "hostile-mutations",
        vec![Upstream::new("primary", "openai", "gpt-mock")],
        Options {
            max_body_bytes: MAX_BODY,
            ..Options::default()
        },
    )
    .await;
    let valid = [body("gpt-mock", false), body("gpt-mock", true)];
    let mut rng = Rng(SEED);
    let mut served = 0u64;
    for round in 0..MUTATIONS {
        let which = rng.below(2);
        let text = mutate(&mut rng, valid[which].as_bytes());
        let response = harness.post_chat(text.clone()).await;
        let status = response.status().as_u16();
        let is_stream = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let answer = response
            .bytes()
            .await
            .expect("the answer is read to its end");
        let shown = String::from_utf8_lossy(&text);
        let context = format!("seed {SEED:#x}, round {round}, body {shown:?}, status {status}");
        assert!(
            matches!(status, 200 | 400 | 404 | 413 | 415 | 422),
            "{context}: {}",
            String::from_utf8_lossy(&answer)
        );
        if status == 200 {
            served += 1;
            if is_stream {
                assert!(answer.starts_with(b"data: "), "{context}");
            } else {
                let value: serde_json::Value = serde_json::from_slice(&answer)
                    .unwrap_or_else(|error| panic!("{context}: a JSON answer: {error}"));
                assert_eq!(value["object"], "chat.completion", "{context}");
            }
        } else {
            let value: serde_json::Value = serde_json::from_slice(&answer)
                .unwrap_or_else(|error| panic!("{context}: an error body: {error}"));
            assert!(value["error"]["message"].is_string(), "{context}: {value}");
            assert!(value["error"]["type"].is_string(), "{context}: {value}");
            assert!(value["error"]["code"].is_string(), "{context}: {value}");
        }
    }
    // Still serving after all of it.
    let (status, _) = harness.chat(Some(KEY), &body("gpt-mock", false)).await;
    assert_eq!(status, 200, "seed {SEED:#x}");
    let dir = harness.stop().await;
    let report = verified(&dir);
    assert_eq!(
        report.open_holds, 0,
        "seed {SEED:#x}: a reservation was left open"
    );
    // Every admitted request was settled, and only parsed requests reached the gate.
    assert_eq!(
        report.counts.settlements, report.counts.admitted,
        "seed {SEED:#x}"
    );
    assert!(
        report.counts.decisions > served,
        "seed {SEED:#x}: {} decisions for {served} served mutations and one valid request",
        report.counts.decisions
    );
    assert!(
        served > 0 && served < MUTATIONS,
        "seed {SEED:#x}: {served} of {MUTATIONS} served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_nesting_and_odd_values_are_refused_without_a_crash() {
    let harness = Harness::start(
        "hostile-nesting",
        vec![Upstream::new("primary", "openai", "gpt-mock")],
        Options {
            max_body_bytes: 64 * 1024,
            ..Options::default()
        },
    )
    .await;
    let deep = format!(
        "{{\"model\": \"gpt-mock\", \"messages\": [{{\"role\": \"user\", \"content\": {}{}}}]}}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    let cases = [
        deep,
        "{\"model\": \"gpt-mock\", \"max_tokens\": 1e400, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}".to_owned(),
        "{\"model\": \"gpt-mock\", \"temperature\": NaN, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}".to_owned(),
        "[]".to_owned(),
        "\"just a string\"".to_owned(),
        String::new(),
    ];
    for text in &cases {
        let (status, value) = harness.chat(Some(KEY), text).await;
        let shown: String = text.chars().take(120).collect();
        assert_eq!(status, 400, "{shown}: {value}");
        assert!(value["error"]["code"].is_string(), "{shown}: {value}");
    }
    // A body that is not UTF-8.
    let response = harness.post_chat(vec![0xFF, 0xFE, b'{', b'}']).await;
    assert_eq!(response.status(), 400);
    let (status, _) = harness.chat(Some(KEY), &body("gpt-mock", false)).await;
    assert_eq!(status, 200);
    let dir = harness.stop().await;
    let report = verified(&dir);
    assert_eq!(
        report.counts.decisions, 1,
        "only the valid request reached the gate"
    );
    assert_eq!(report.open_holds, 0);
}

/// Writes `request` on a fresh connection and reads what comes back until the server
/// closes or two seconds pass; returns the status line's code (0: no answer at all).
fn raw_exchange(address: std::net::SocketAddr, request: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    // The server may answer and close before taking every byte: a refused write is fine.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4_096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.len() > 1 << 20 {
                    break;
                }
            }
        }
    }
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_http_framing_attacks_are_refused_and_the_server_keeps_serving() {
    let harness = Harness::start(
        "hostile-framing",
        vec![Upstream::new("primary", "openai", "gpt-mock")],
        Options {
            max_body_bytes: 4_096,
            ..Options::default()
        },
    )
    .await;
    let address = harness.addr;
    let valid = body("gpt-mock", false);
    let head = |extra: &str, length: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\n{extra}Content-Length: {length}\r\n\r\n"
        )
    };
    let long_header = format!("X-Long: {}\r\n", "a".repeat(200_000));
    let many_headers: String = (0..2_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    // (what, the bytes, the statuses acceptable: 0 means the server closed without one)
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("garbage request line", b"\x00\x01\x02 nonsense\r\n\r\n".to_vec(), &[400, 0]),
        (
            "header line of 200 KB",
            format!("{}{valid}", head(&long_header, &valid.len().to_string())).into_bytes(),
            &[431],
        ),
        (
            "2,000 headers",
            format!("{}{valid}", head(&many_headers, &valid.len().to_string())).into_bytes(),
            &[431],
        ),
        (
            "two different Content-Lengths",
            format!("{}{valid}", head("Content-Length: 3\r\n", &valid.len().to_string()))
                .into_bytes(),
            &[400, 0],
        ),
        (
            "a Content-Length that is not a number",
            format!("{}{valid}", head("", "12abc")).into_bytes(),
            &[400, 0],
        ),
        (
            "Content-Length over the body limit",
            head("", "999999999999").into_bytes(),
            &[413, 400, 0],
        ),
        (
            "chunked and a Content-Length together (smuggling)",
            format!(
                "{}0\r\n\r\nPOST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n",
                head("Transfer-Encoding: chunked\r\n", "4")
            )
            .into_bytes(),
            &[400, 0],
        ),
        (
            "a bad chunk size",
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
                 Transfer-Encoding: chunked\r\n\r\nzz\r\n{valid}\r\n0\r\n\r\n"
            )
            .into_bytes(),
            &[400, 0],
        ),
        (
            "a non-ASCII authorization header",
            format!("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \u{e9}\u{e9}\r\nContent-Length: {}\r\n\r\n{valid}", valid.len()).into_bytes(),
            &[401, 400],
        ),
        (
            "a lease header of binary bytes",
            [
                head("X-Calybris-Lease: \u{1}\u{7f}\r\n", &valid.len().to_string()).as_bytes(),
                valid.as_bytes(),
            ]
            .concat(),
            &[200, 400, 403],
        ),
    ];
    for (what, bytes, acceptable) in &cases {
        let (status, text) = tokio::task::spawn_blocking({
            let bytes = bytes.clone();
            move || raw_exchange(address, &bytes)
        })
        .await
        .expect("the exchange ran");
        assert!(
            acceptable.contains(&status),
            "{what}: status {status}, answer {:?}",
            text.chars().take(300).collect::<String>()
        );
        if (400..500).contains(&status) && text.contains("application/json") {
            let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
            let value: serde_json::Value =
                serde_json::from_str(body).unwrap_or_else(|error| panic!("{what}: {error}"));
            assert!(value["error"]["code"].is_string(), "{what}: {value}");
        }
    }
    // A body shorter than its Content-Length, then the client goes away: no decision.
    let short = format!("{}{}", head("", "500"), &valid[..10]);
    tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(address).expect("connect");
        stream.write_all(short.as_bytes()).expect("write");
        drop(stream);
    })
    .await
    .expect("the short body was sent");
    // The request id a client sends is hashed into the record, never echoed back in a
    // header; the answer's own headers are the gateway's.
    let response = harness
        .client
        .post(harness.url("/v1/chat/completions"))
        .bearer_auth(KEY)
        .header("x-request-id", "id-1 x".repeat(100))
        .body(valid.clone())
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 200);
    for (name, value) in response.headers() {
        assert!(
            !value.as_bytes().windows(4).any(|w| w == b"id-1"),
            "{name} echoes the request id"
        );
    }
    let (status, _) = harness.chat(Some(KEY), &valid).await;
    assert_eq!(status, 200, "the server still serves");
    let dir = harness.stop().await;
    let report = verified(&dir);
    assert_eq!(report.open_holds, 0);
    assert_eq!(report.counts.settlements, report.counts.admitted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_head_and_an_idle_connection_are_closed_after_the_head_timeout() {
    let harness = Harness::start(
        "hostile-slow-head",
        vec![Upstream::new("primary", "openai", "gpt-mock")],
        Options {
            server_extra: "head_timeout_ms = 300".to_owned(),
            ..Options::default()
        },
    )
    .await;
    let address = harness.addr;
    let valid = body("gpt-mock", false);
    let (slow, idle) = tokio::task::spawn_blocking(move || {
        // Half a head, then nothing: the server closes it, without a decision.
        let mut stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            .expect("write");
        let began = std::time::Instant::now();
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
        let slow = began.elapsed();
        // One whole request, then idle: served, then closed after the timeout.
        let mut stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{valid}",
            valid.len()
        );
        stream.write_all(request.as_bytes()).expect("write");
        let began = std::time::Instant::now();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        (
            slow,
            (
                began.elapsed(),
                String::from_utf8_lossy(&answer).into_owned(),
            ),
        )
    })
    .await
    .expect("the exchanges ran");
    // Closed by the server (well before the client's own 5 s read timeout).
    assert!(
        slow >= Duration::from_millis(250) && slow < Duration::from_secs(4),
        "the slow head's connection closed after {slow:?}"
    );
    let (idle, answer) = idle;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        idle >= Duration::from_millis(250) && idle < Duration::from_secs(4),
        "the idle connection closed after {idle:?}"
    );
    let dir = harness.stop().await;
    let report = verified(&dir);
    assert_eq!(
        report.counts.decisions, 1,
        "only the whole request was decided"
    );
    assert_eq!(report.open_holds, 0);
}

/// Total bytes of the files under `dir`.
fn bytes_under(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("a directory")
        .map(|entry| {
            let entry = entry.expect("an entry");
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                bytes_under(&entry.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_the_budget_refuses_stays_bounded_on_disk_with_retention() {
    const FLOOD: usize = 3_000;
    const CONCURRENT: usize = 32;
    let harness = Harness::start(
        "hostile-flood",
        vec![Upstream::new("primary", "openai", "gpt-mock")],
        Options {
            budget_usd: "0",
            server_extra: "retention = \"since_last_snapshot\"\nsnapshot_every_records = 100\n\
                           segment_limit_bytes = 16384"
                .to_owned(),
            ..Options::default()
        },
    )
    .await;
    let valid = body("gpt-mock", false);
    let harness = std::sync::Arc::new(harness);
    let mut tasks = Vec::new();
    for task in 0..CONCURRENT {
        let (harness, valid) = (harness.clone(), valid.clone());
        tasks.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for _ in (task..FLOOD).step_by(CONCURRENT) {
                let (status, value) = harness.chat(Some(KEY), &valid).await;
                assert!(value["error"]["code"].is_string(), "{value}");
                statuses.push(status);
            }
            statuses
        }));
    }
    let mut refused = 0;
    for task in tasks {
        for status in task.await.expect("a flood task") {
            assert_eq!(status, 402, "a budget of zero refuses every request");
            refused += 1;
        }
    }
    assert_eq!(refused, FLOOD);
    let harness = std::sync::Arc::into_inner(harness).expect("the tasks are done");
    let dir = harness.stop().await;
    let on_disk = bytes_under(&dir.join("log"));
    let anchor = std::fs::read_to_string(dir.join(calybris_gate::START_ANCHOR_FILE))
        .expect("segments were retired and the start anchor written");
    let start: calybris_wal::WalAnchor = anchor.trim().parse().expect("an anchor");
    let report = calybris_gate::verify_dir(
        &dir,
        &calybris_gate::VerifyOptions {
            start_anchor: Some(start),
            ..calybris_gate::VerifyOptions::default()
        },
    )
    .unwrap_or_else(|error| panic!("the retained log verifies: {error}"));
    eprintln!(
        "{FLOOD} refusals: log reaches sequence {}, {} decisions and {on_disk} bytes kept",
        report.anchor.next_sequence, report.counts.decisions
    );
    // Every refusal was logged (the log reaches past all of them), but only the last
    // snapshot's stretch is kept: a few hundred records in at most a few segments.
    assert!(
        report.anchor.next_sequence > FLOOD as u64,
        "{:?}",
        report.anchor
    );
    assert!(
        report.counts.decisions < 500,
        "{} decisions kept of {FLOOD}",
        report.counts.decisions
    );
    assert!(on_disk < 160 * 1024, "{on_disk} bytes of log kept");
    assert_eq!(report.counts.admitted, 0);
    assert_eq!(report.open_holds, 0);
}
