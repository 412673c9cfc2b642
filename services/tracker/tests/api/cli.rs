//! `tracker journey <frame-id>`: the waterfall, fetched from a running tracker.

use std::process::Command;

use crate::helpers::{
    OtlpAnswer, TempDir, TrackerProcess, encode_otlp, frame_id, frame_spans, otlp_answer,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_prints_a_waterfall() {
    let data = TempDir::new("tracker-cli");
    let tracker = TrackerProcess::spawn(&[("DATA_DIR", &data.path().display().to_string())]);
    let frame = frame_id("cam61");
    let (capture, processing) = frame_spans(&frame, true);
    let http = reqwest::Client::new();
    for request in [&capture, &processing] {
        let (body, headers) = encode_otlp(request, false);
        let mut post = http.post(tracker.url("/v1/traces")).body(body);
        for (name, value) in headers {
            post = post.header(name, value);
        }
        assert!(matches!(
            otlp_answer(post.send().await.unwrap()).await,
            OtlpAnswer::Ok(_)
        ));
    }

    let output = Command::new(env!("CARGO_BIN_EXE_tracker"))
        .args(["journey", frame.as_str(), "--url", &tracker.url])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with(&format!("frame {frame}")), "{stdout}");
    assert!(lines[0].contains("FAILED"), "{stdout}");
    assert!(
        stdout.contains("frame-capture") && stdout.contains("capture"),
        "{stdout}"
    );
    assert!(stdout.contains("queue wait"), "{stdout}");
    assert!(stdout.contains("error: model not loaded"), "{stdout}");

    let unknown = frame_id("cam61");
    let output = Command::new(env!("CARGO_BIN_EXE_tracker"))
        .args(["journey", unknown.as_str(), "--url", &tracker.url])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("no events for frame"),
        "{stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_tracker"))
        .args(["journey", "nope"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("invalid frame id"));
    tracker.terminate();
}
