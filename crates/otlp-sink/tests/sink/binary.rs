//! The `otlp-sink` binary: endpoints on start, counts on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use prost::Message;
use reqwest::header::CONTENT_TYPE;

use crate::helpers::{logs_request, trace_request};

#[cfg(unix)]
#[tokio::test]
async fn binary_prints_endpoints_then_counts_on_sigterm() -> anyhow::Result<()> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_otlp-sink"))
        .args(["--grpc-port", "0", "--http-port", "0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let mut line = String::new();
    // The binary prints this line as soon as it has bound, so blocking here is brief.
    stdout.read_line(&mut line)?;
    let endpoints: serde_json::Value = serde_json::from_str(&line)?;
    let grpc = endpoints["grpc"]
        .as_str()
        .expect("a grpc endpoint")
        .to_owned();
    let http = endpoints["http"]
        .as_str()
        .expect("an http endpoint")
        .to_owned();

    TraceServiceClient::connect(grpc)
        .await?
        .export(trace_request())
        .await?;
    let response = reqwest::Client::new()
        .post(format!("{http}/v1/logs"))
        .header(CONTENT_TYPE, "application/x-protobuf")
        .body(logs_request().encode_to_vec())
        .send()
        .await?;
    assert!(response.status().is_success());

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    assert!(status.success());
    line.clear();
    stdout.read_line(&mut line)?;
    assert!(child.wait()?.success());
    let counts: serde_json::Value = serde_json::from_str(&line)?;
    assert_eq!(
        counts,
        serde_json::json!({ "spans": 2, "logs": 1, "metrics": 0, "requests": 2 })
    );
    Ok(())
}
