//! kill -9 during sustained ingest: every acknowledged event survives a restart on the
//! same data, exactly once; each request is all or nothing. On SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use frame_tracking::FrameId;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::helpers::{
    JsonResponse, OtlpAnswer, SpanSpec, TempDir, TestDatabase, TrackerProcess, eventually,
    export_request, json_response, now_nanos, send_otlp, span, trace_id,
};

const CLIENTS: usize = 4;
const FRAMES_PER_REQUEST: usize = 10;
const SPANS_PER_FRAME: u64 = 5;
/// Kill once this many requests were acknowledged.
const ACKED_BEFORE_KILL: usize = 100;

/// One request's frames (each with `SPANS_PER_FRAME` events).
struct Sent {
    frames: Vec<FrameId>,
    request: ExportTraceServiceRequest,
}

fn batch(client: usize) -> Sent {
    let mut frames = Vec::new();
    let mut spans = Vec::new();
    let start = now_nanos();
    for _ in 0..FRAMES_PER_REQUEST {
        let frame = FrameId::generate(&format!("crash{client}"), "rgb").unwrap();
        let id = frame.to_string();
        let trace = trace_id();
        for index in 0..SPANS_PER_FRAME {
            spans.push(span(SpanSpec {
                frame_id: Some(&id),
                name: "stage",
                trace_id: trace,
                span_id: index + 1,
                parent: (index > 0).then_some(index),
                start: start + index * 1_000,
                end: start + index * 1_000 + 500,
                error: None,
            }));
        }
        frames.push(frame);
    }
    Sent {
        frames,
        request: export_request("crash-producer", spans),
    }
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    request: &ExportTraceServiceRequest,
) -> Option<OtlpAnswer> {
    send_otlp(http, url, request, true).await.ok()
}

async fn journey(http: &reqwest::Client, url: &str, frame: &FrameId) -> JsonResponse {
    let response = http
        .get(format!("{url}/frames/{frame}/journey"))
        .send()
        .await
        .unwrap();
    json_response(response).await
}

async fn kill_during_ingest_then_restart(env: Vec<(String, String)>) {
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let tracker = TrackerProcess::spawn(&vars);
    let url = tracker.url.clone();
    let http = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let unacked: Arc<Mutex<Vec<Sent>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (http, url) = (http.clone(), url.clone());
        let (acked, unacked, stop) = (acked.clone(), unacked.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let sent = batch(client);
                match post(&http, &url, &sent.request).await {
                    Some(OtlpAnswer::Ok(response)) => {
                        assert_eq!(response.partial_success, None);
                        acked.lock().unwrap().push(sent);
                    }
                    // Refused or cut off: maybe committed, maybe not, never half.
                    _ => {
                        unacked.lock().unwrap().push(sent);
                        break;
                    }
                }
            }
        }));
    }
    eventually(Duration::from_secs(120), || async {
        (acked.lock().unwrap().len() >= ACKED_BEFORE_KILL).then_some(())
    })
    .await;
    tracker.kill_9();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    let tracker = TrackerProcess::spawn(&vars);
    let url = tracker.url.clone();
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let unacked = std::mem::take(&mut *unacked.lock().unwrap());
    assert!(acked.len() >= ACKED_BEFORE_KILL);
    let mut events = 0;
    for sent in &acked {
        for frame in &sent.frames {
            let journey = journey(&http, &url, frame).await;
            assert_eq!(
                journey.status, 200,
                "acknowledged frame {frame} lost: {:?}",
                journey.body
            );
            let ids: BTreeSet<&str> = journey.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|event| event["event_id"].as_str().unwrap())
                .collect();
            assert_eq!(
                journey.body["events"].as_array().unwrap().len(),
                ids.len(),
                "duplicates"
            );
            assert_eq!(
                ids.len() as u64,
                SPANS_PER_FRAME,
                "{frame}: {:?}",
                journey.body
            );
            events += SPANS_PER_FRAME;
        }
    }
    for sent in &unacked {
        let mut stored = BTreeSet::new();
        for frame in &sent.frames {
            let journey = journey(&http, &url, frame).await;
            match journey.status {
                404 => stored.insert(0),
                200 => {
                    let count = journey.body["events"].as_array().unwrap().len() as u64;
                    assert_eq!(count, SPANS_PER_FRAME, "a request was half stored");
                    events += SPANS_PER_FRAME;
                    stored.insert(count)
                }
                other => panic!("unexpected status {other}"),
            };
        }
        assert_eq!(stored.len(), 1, "a request was half stored: {stored:?}");
    }
    let health = http.get(format!("{url}/health")).send().await.unwrap();
    let health = json_response(health).await;
    assert_eq!(health.body["store"]["events"], events, "{:?}", health.body);

    // Re-delivering an acknowledged request after the restart stores nothing new.
    let first = &acked[0];
    assert!(matches!(
        post(&http, &url, &first.request).await,
        Some(OtlpAnswer::Ok(_))
    ));
    let health = json_response(http.get(format!("{url}/health")).send().await.unwrap()).await;
    assert_eq!(health.body["store"]["events"], events, "{:?}", health.body);
    tracker.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_on_sqlite() {
    let data = TempDir::new("tracker-crash");
    kill_during_ingest_then_restart(vec![(
        "DATA_DIR".to_owned(),
        data.path().display().to_string(),
    )])
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_kill_9_on_postgres() {
    let database = TestDatabase::create().await;
    kill_during_ingest_then_restart(vec![("DATABASE_URL".to_owned(), database.url.clone())]).await;
    database.drop_database().await;
}
