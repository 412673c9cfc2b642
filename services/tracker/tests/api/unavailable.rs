//! A store that cannot commit: 503 over HTTP, `UNAVAILABLE` over gRPC, 503 from
//! `/health`, nothing acknowledged, nothing stored; ingest resumes when it is back.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;

use crate::helpers::{
    CutProxy, TestDatabase, database_url_via, eventually, frame_id, frame_spans,
    spawn_app_on_postgres,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_store_is_503_and_nothing_is_acknowledged() {
    let database = TestDatabase::create().await;
    let (host, port) = testkit::host_port(&database.url).unwrap();
    let proxy = CutProxy::start(format!("{host}:{port}")).await;
    let app = spawn_app_on_postgres(&database_url_via(&database.url, proxy.port)).await;

    let before = frame_id("cam71");
    let (capture, _) = frame_spans(&before, false);
    app.post_otlp(&capture, false).await.ok();

    proxy.set_up(false);
    let during = frame_id("cam71");
    let (capture, processing) = frame_spans(&during, false);
    let error = app.post_otlp(&capture, true).await.error();
    assert_eq!(error.status, 503, "{error:?}");
    assert!(error.message.contains("unavailable"), "{error:?}");
    assert_eq!(error.code, Some(tonic::Code::Unavailable as i32));
    // OTLP clients retry 503, after Retry-After when given.
    assert_eq!(error.retry_after.as_deref(), Some("1"));
    let mut grpc = TraceServiceClient::connect(app.grpc_url.clone())
        .await
        .unwrap();
    let status = grpc.export(processing).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(app.get("/health").await.status, 503);
    assert_eq!(app.journey(&before).await.status, 503);

    proxy.set_up(true);
    eventually(Duration::from_secs(30), || async {
        (app.get("/health").await.status == 200).then_some(())
    })
    .await;
    assert_eq!(app.journey(&before).await.status, 200);
    assert_eq!(app.journey(&during).await.status, 404);
    let (capture, _) = frame_spans(&during, false);
    app.post_otlp(&capture, false).await.ok();
    assert_eq!(app.journey(&during).await.status, 200);
    database.drop_database().await;
}
