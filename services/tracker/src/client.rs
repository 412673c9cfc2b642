//! A small client of the tracker's API, for the `tracker journey` and `tracker analyze`
//! commands and the demo.

use std::time::Duration;

use frame_tracking::FrameId;
use futures::{StreamExt as _, TryStreamExt as _};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::journey::Journey;
use crate::model::FrameSummary;

/// Journeys fetched at once by [`TrackerClient::journeys`].
const CONCURRENT_FETCHES: usize = 8;

/// Why an answer could not be fetched.
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
    /// The base URL is not an `http(s)://` URL.
    #[error("invalid tracker URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The answer is not what the API returns.
    #[error("unexpected answer from the tracker: {0}")]
    Body(String),
}

/// A client of one tracker (`base_url` such as `http://127.0.0.1:8081`).
#[derive(Debug, Clone)]
pub struct TrackerClient {
    base_url: String,
    http: reqwest::Client,
}

/// A page of `GET /frames` as the API sends it.
#[derive(Debug, Deserialize)]
struct FramesPage {
    frames: Vec<FrameSummary>,
    next_cursor: Option<String>,
}

impl TrackerClient {
    /// A client with a 30 s timeout per request.
    pub fn new(base_url: &str) -> Result<TrackerClient, ClientError> {
        let invalid = |reason: String| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason,
        };
        let parsed = reqwest::Url::parse(base_url).map_err(|error| invalid(error.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("expected http:// or https://".to_owned()));
        }
        let base_url = base_url.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|source| ClientError::Unreachable {
                url: base_url.clone(),
                source,
            })?;
        Ok(TrackerClient { base_url, http })
    }

    /// `GET /frames/{frame_id}/journey`.
    pub async fn journey(&self, frame_id: &FrameId) -> Result<Journey, ClientError> {
        self.get(&format!("/frames/{frame_id}/journey"), &[]).await
    }

    /// `GET /frames` with `filters` (`camera`, `status`, `min_duration_ms`, `since`,
    /// `until`), following the cursor until `max` frames or the last page; newest first.
    pub async fn frames(
        &self,
        filters: &[(&str, String)],
        max: usize,
    ) -> Result<Vec<FrameSummary>, ClientError> {
        let mut frames = Vec::new();
        let mut cursor: Option<String> = None;
        while frames.len() < max {
            let limit = (max - frames.len()).min(1000).to_string();
            let mut query: Vec<(&str, String)> = filters.to_vec();
            query.push(("limit", limit));
            if let Some(cursor) = cursor.take() {
                query.push(("cursor", cursor));
            }
            let page: FramesPage = self.get("/frames", &query).await?;
            frames.extend(page.frames);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(frames)
    }

    /// The journeys of `frame_ids`, in the same order, a few requests at a time.
    pub async fn journeys(&self, frame_ids: &[FrameId]) -> Result<Vec<Journey>, ClientError> {
        futures::stream::iter(frame_ids.iter().map(|id| self.journey(id)))
            .buffered(CONCURRENT_FETCHES)
            .try_collect()
            .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let unreachable = |source| ClientError::Unreachable {
            url: self.base_url.clone(),
            source,
        };
        let mut url =
            reqwest::Url::parse(&format!("{}{path}", self.base_url)).map_err(|error| {
                ClientError::InvalidUrl {
                    url: self.base_url.clone(),
                    reason: error.to_string(),
                }
            })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let response = self.http.get(url).send().await.map_err(unreachable)?;
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
        serde_json::from_slice(&body).map_err(|error| ClientError::Body(format!("{path}: {error}")))
    }
}

/// Fetches `GET {base_url}/frames/{frame_id}/journey`.
pub async fn fetch_journey(base_url: &str, frame_id: &FrameId) -> Result<Journey, ClientError> {
    TrackerClient::new(base_url)?.journey(frame_id).await
}
