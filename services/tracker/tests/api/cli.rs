//! The CLI against a running tracker: `tracker journey <frame-id>` (the waterfall) and
//! `tracker analyze` (the trace analyzer).

use std::process::Command;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::helpers::{OtlpAnswer, TempDir, TrackerProcess, frame_id, frame_spans, send_otlp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journey_prints_a_waterfall() {
    let data = TempDir::new("tracker-cli");
    let tracker = TrackerProcess::spawn(&[("DATA_DIR", &data.path().display().to_string())]);
    let frame = frame_id("cam61");
    let (capture, processing) = frame_spans(&frame, true);
    let http = reqwest::Client::new();
    for request in [&capture, &processing] {
        post(&http, &tracker, request).await;
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

/// Posts one OTLP export request, which must be accepted.
async fn post(
    http: &reqwest::Client,
    tracker: &TrackerProcess,
    request: &ExportTraceServiceRequest,
) {
    assert!(matches!(
        send_otlp(http, &tracker.url, request, false).await.unwrap(),
        OtlpAnswer::Ok(_)
    ));
}

fn analyze(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tracker"))
        .arg("analyze")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_finds_slow_failed_incomplete_and_orphaned_frames() {
    let data = TempDir::new("tracker-analyze");
    let tracker = TrackerProcess::spawn(&[("DATA_DIR", &data.path().display().to_string())]);
    let http = reqwest::Client::new();
    // A healthy frame, a frame whose detection failed, a frame captured but never
    // processed, and a frame whose capture span never arrived (its processing is orphaned).
    let healthy = frame_id("cam71");
    let failed = frame_id("cam71");
    let lost = frame_id("cam72");
    let orphaned = frame_id("cam72");
    let (capture, processing) = frame_spans(&healthy, false);
    post(&http, &tracker, &capture).await;
    post(&http, &tracker, &processing).await;
    let (capture, processing) = frame_spans(&failed, true);
    post(&http, &tracker, &capture).await;
    post(&http, &tracker, &processing).await;
    post(&http, &tracker, &frame_spans(&lost, false).0).await;
    post(&http, &tracker, &frame_spans(&orphaned, false).1).await;

    let (ok, stdout, stderr) = analyze(&["--url", &tracker.url, "--json", "--top", "5"]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["frames"], 4, "{report:#}");
    assert_eq!(report["events"], 9);
    assert_eq!(
        report["expected_stages"],
        serde_json::json!(["capture", "process_frame", "detect_objects"])
    );
    assert_eq!(report["complete"], 2);
    assert_eq!(report["incomplete"], 2);
    assert_eq!(report["failed"], 1);
    assert_eq!(report["failed_frames"][0]["frame_id"], failed.as_str());
    assert_eq!(
        report["failed_frames"][0]["failures"][0]["error_message"],
        "model not loaded"
    );
    assert_eq!(report["orphans"], 1);
    assert_eq!(report["orphan_spans"][0]["frame_id"], orphaned.as_str());
    assert_eq!(report["orphan_spans"][0]["stage"], "process_frame");
    let incomplete: Vec<&str> = report["incomplete_frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|frame| frame["frame_id"].as_str().unwrap())
        .collect();
    assert!(incomplete.contains(&lost.as_str()) && incomplete.contains(&orphaned.as_str()));
    let process = report["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|stage| stage["stage"] == "process_frame")
        .unwrap();
    assert_eq!(process["duration"]["p50_nanos"], 5_000_000);
    assert_eq!(report["waits"][0]["before_stage"], "process_frame");
    assert_eq!(report["waits"][0]["duration"]["max_nanos"], 4_000_000);

    // Filters reach the search API; text is for people; --save keeps the JSON.
    let saved = data.path().join("report.json");
    let (ok, stdout, stderr) = analyze(&[
        "--url",
        &tracker.url,
        "--camera=cam71",
        "--expect",
        "capture,process_frame",
        "--save",
        &saved.display().to_string(),
    ]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("2 frames, 6 events"), "{stdout}");
    assert!(
        stdout.contains("complete 2  incomplete 0  failed 1  orphan spans 0"),
        "{stdout}"
    );
    assert!(stdout.contains("capture -> process_frame"), "{stdout}");
    assert!(
        stdout.contains("frame-processor/detect_objects: model not loaded"),
        "{stdout}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(saved["frames"], 2);

    let (ok, stdout, _) = analyze(&["--url", &tracker.url, "--camera", "cam99"]);
    assert!(ok);
    assert_eq!(stdout, "no frames to analyse\n");

    for (args, expected) in [
        (vec!["--limit", "0"], "invalid --limit \"0\""),
        (vec!["--last", "soon"], "invalid --last \"soon\""),
        (vec!["--status", "lost"], "invalid query parameter status"),
        (vec!["--url", "ftp://x"], "invalid tracker URL"),
        (vec!["--bogus"], "unexpected argument \"--bogus\""),
    ] {
        let mut full = vec!["--url", tracker.url.as_str()];
        full.extend(args);
        let (ok, _, stderr) = analyze(&full);
        assert!(!ok && stderr.contains(expected), "{full:?}: {stderr}");
    }
    tracker.terminate();
}
