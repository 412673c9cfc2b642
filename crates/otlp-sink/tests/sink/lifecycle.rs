//! Starting on fixed ports and shutting down.

use std::net::TcpListener;

use otlp_sink::{OtlpSink, SinkConfig, StartError, Transport};

#[tokio::test]
async fn endpoints_name_the_bound_ports() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;

    assert_ne!(sink.grpc_addr().port(), 0);
    assert_ne!(sink.grpc_addr(), sink.http_addr());
    assert_eq!(
        sink.grpc_endpoint(),
        format!("http://127.0.0.1:{}", sink.grpc_addr().port())
    );
    assert_eq!(
        sink.http_endpoint(),
        format!("http://127.0.0.1:{}", sink.http_addr().port())
    );
    Ok(())
}

#[tokio::test]
async fn busy_port_is_a_bind_error() -> anyhow::Result<()> {
    let taken = TcpListener::bind("127.0.0.1:0")?;
    let taken_addr = taken.local_addr()?;
    let result = OtlpSink::start_on(SinkConfig {
        http_addr: taken_addr,
        ..SinkConfig::local()
    })
    .await;

    let error = result.expect_err("the HTTP port is taken");
    assert!(
        matches!(error, StartError::Bind { transport: Transport::Http, addr, .. } if addr == taken_addr),
        "{error:?}"
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_frees_the_ports() -> anyhow::Result<()> {
    let sink = OtlpSink::start().await?;
    let config = SinkConfig {
        grpc_addr: sink.grpc_addr(),
        http_addr: sink.http_addr(),
        ..SinkConfig::local()
    };
    sink.shutdown().await?;

    let restarted = OtlpSink::start_on(config.clone()).await?;
    assert_eq!(restarted.grpc_addr(), config.grpc_addr);
    assert_eq!(restarted.http_addr(), config.http_addr);
    restarted.shutdown().await?;
    Ok(())
}
