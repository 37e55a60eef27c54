//! `calybris serve`: usage errors, and the demo answering a chat request over loopback.

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{calybris, path_str, temp_dir};

#[test]
fn serve_needs_exactly_one_of_config_and_demo() {
    let run = calybris(&["serve"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.starts_with("ERROR SERVE:"), "{run:?}");
    let dir = temp_dir("serve-missing");
    let missing = dir.join("missing.toml");
    let run = calybris(&["serve", "--config", path_str(&missing)]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("missing.toml"), "{run:?}");
}

#[test]
fn the_demo_serves_a_chat_completion_and_its_directory_verifies() {
    let dir = temp_dir("serve-demo");
    let gate = dir.join("gate");
    let mut child = Command::new(env!("CARGO_BIN_EXE_calybris"))
        .args([
            "serve",
            "--demo",
            "--listen",
            "127.0.0.1:0",
            "--dir",
            path_str(&gate),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("a first line");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address")
        .to_owned();
    let body = r#"{"model": "auto", "messages": [{"role": "user", "content": "Hello"}]}"#;
    let mut stream = std::net::TcpStream::connect(&addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer sk-calybris-demo\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("writes");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("reads");
    let _ = child.kill();
    let _ = child.wait();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("\"object\":\"chat.completion\""),
        "{response}"
    );
    assert!(response.contains("x-calybris-served-by"), "{response}");
    // Killed after the answer: the answer's records were durable before it went out.
    let run = calybris(&["verify", path_str(&gate)]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("VERIFIED"), "{run:?}");
}
