//! A small client of the tracker's API, for the `tracker journey` command and the demo.

use std::time::Duration;

use frame_tracking::FrameId;

use crate::journey::Journey;

/// Why a journey could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The tracker could not be reached.
    #[error("cannot reach the tracker at {url}: {source}")]
    Unreachable {
        /// The base URL.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The tracker answered with an error (its `error` message).
    #[error("the tracker answered {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The `error` field of the body, or the body.
        message: String,
    },
    /// The answer is not a journey.
    #[error("the tracker's answer is not a journey: {0}")]
    Body(String),
}

/// Fetches `GET {base_url}/frames/{frame_id}/journey`.
pub async fn fetch_journey(base_url: &str, frame_id: &FrameId) -> Result<Journey, ClientError> {
    let base_url = base_url.trim_end_matches('/');
    let unreachable = |source| ClientError::Unreachable {
        url: base_url.to_owned(),
        source,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(unreachable)?;
    let response = client
        .get(format!("{base_url}/frames/{frame_id}/journey"))
        .send()
        .await
        .map_err(unreachable)?;
    let status = response.status();
    let body = response.bytes().await.map_err(unreachable)?;
    if !status.is_success() {
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|value| value["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        return Err(ClientError::Status {
            status: status.as_u16(),
            message,
        });
    }
    serde_json::from_slice(&body).map_err(|error| ClientError::Body(error.to_string()))
}
