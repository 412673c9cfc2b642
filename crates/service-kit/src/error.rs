//! [`ApiError`]: the one error type of a Pathlight HTTP API, and extractors that reject
//! with it.
//!
//! The client gets a status and a JSON body `{"error": "<what went wrong>", "detail": ...}`;
//! server-side failures are logged with their full cause chain and marked on the request's
//! span (through [`telemetry::http::ResponseError`]) without leaking internals to the client.
//!
//! ```
//! use axum::http::StatusCode;
//! use service_kit::ApiError;
//!
//! let error = ApiError::bad_request("width must be positive").with_detail("width=0");
//! assert_eq!(error.status(), StatusCode::BAD_REQUEST);
//! ```

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use telemetry::http::ResponseError;

/// An HTTP API error: a status, a short message and optional structured detail.
pub struct ApiError {
    status: StatusCode,
    error: Cow<'static, str>,
    detail: Option<serde_json::Value>,
    error_type: &'static str,
    source: Option<Box<dyn StdError + Send + Sync>>,
}

impl ApiError {
    /// An error with any status; `error` is what the client reads.
    pub fn new(status: StatusCode, error: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            detail: None,
            error_type: default_error_type(status),
            source: None,
        }
    }

    /// 400: the request is malformed; `error` names the problem (field, value).
    pub fn bad_request(error: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, error)
    }

    /// 404: nothing with that id.
    pub fn not_found(error: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, error)
    }

    /// 413: the body is larger than the limit.
    pub fn payload_too_large(limit_bytes: u64) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large")
            .with_detail(serde_json::json!({ "limit_bytes": limit_bytes }))
    }

    /// 422: well-formed, but the content cannot be processed (e.g. an undecodable image).
    pub fn unprocessable(error: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error)
    }

    /// 503: a dependency (store, queue) is unavailable; the client may retry. The cause is
    /// logged, not returned.
    pub fn unavailable(
        error_type: &'static str,
        error: impl Into<Cow<'static, str>>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> ApiError {
        let mut api_error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error);
        api_error.error_type = error_type;
        api_error.source = Some(source.into());
        api_error
    }

    /// 500: a bug or an unexpected failure. The client reads only "internal error"; the
    /// cause chain goes to the log.
    pub fn internal(
        error_type: &'static str,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> ApiError {
        let mut api_error = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        api_error.error_type = error_type;
        api_error.source = Some(source.into());
        api_error
    }

    /// Adds structured detail to the body (a string, or any JSON value).
    pub fn with_detail(mut self, detail: impl Into<serde_json::Value>) -> ApiError {
        self.detail = Some(detail.into());
        self
    }

    /// The status sent to the client.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.error
    }

    /// The JSON body sent to the client.
    pub fn body(&self) -> serde_json::Value {
        match &self.detail {
            Some(detail) => serde_json::json!({ "error": self.error, "detail": detail }),
            None => serde_json::json!({ "error": self.error }),
        }
    }
}

fn default_error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        503 => "unavailable",
        _ if status.is_server_error() => "internal",
        _ => "client_error",
    }
}

/// The full cause chain, `outer: inner: innermost`.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("status", &self.status)
            .field("error", &self.error)
            .field("detail", &self.detail)
            .field(
                "source",
                &self.source.as_deref().map(|source| chain(source)),
            )
            .finish()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.status, self.error)?;
        if let Some(source) = &self.source {
            write!(f, ": {}", chain(source.as_ref()))?;
        }
        Ok(())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = axum::Json(self.body());
        let mut response = (self.status, body).into_response();
        if self.status.is_server_error() {
            let cause = self
                .source
                .as_deref()
                .map(|source| chain(source))
                .unwrap_or_else(|| self.error.to_string());
            tracing::error!(status = self.status.as_u16(), error.type = self.error_type, error = %cause, "request failed");
            response
                .extensions_mut()
                .insert(ResponseError::new(self.error_type, cause));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let error = match &rejection {
            JsonRejection::MissingJsonContentType(_) => {
                "expected a JSON body with content-type application/json"
            }
            JsonRejection::JsonSyntaxError(_) => "the body is not valid JSON",
            JsonRejection::JsonDataError(_) => "the JSON body does not have the expected shape",
            _ => "the JSON body could not be read",
        };
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body is too large");
        }
        ApiError::new(rejection.status(), error).with_detail(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> ApiError {
        ApiError::new(rejection.status(), "invalid query parameters")
            .with_detail(rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> ApiError {
        ApiError::new(rejection.status(), "invalid path parameter")
            .with_detail(rejection.body_text())
    }
}

/// `axum::Json`, but a rejected body is an [`ApiError`] (JSON, naming the problem).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query`, rejecting with an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path`, rejecting with an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The fallback for unknown routes: 404 with a JSON body naming the method and path
/// (never the query string, which may carry secrets).
pub async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    struct Frame {
        #[allow(dead_code)]
        width: u32,
    }

    async fn send(
        router: Router,
        request: axum::http::Request<Body>,
    ) -> (StatusCode, serde_json::Value) {
        let response = router.oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    fn router() -> Router {
        Router::new()
            .route(
                "/frames",
                post(|ApiJson(_frame): ApiJson<Frame>| async { "ok" }),
            )
            .fallback(not_found)
    }

    fn json_request(body: &str) -> axum::http::Request<Body> {
        axum::http::Request::post("/frames")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    }

    #[tokio::test]
    async fn a_body_of_the_wrong_shape_names_the_field() {
        let (status, body) = send(router(), json_request(r#"{"width": "wide"}"#)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            body["error"],
            "the JSON body does not have the expected shape"
        );
        assert!(body["detail"].as_str().unwrap().contains("width"), "{body}");
    }

    #[tokio::test]
    async fn invalid_json_is_a_bad_request() {
        let (status, body) = send(router(), json_request("{")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "the body is not valid JSON");
    }

    #[tokio::test]
    async fn a_missing_content_type_is_unsupported() {
        let request = axum::http::Request::post("/frames")
            .body(Body::from("{}"))
            .unwrap();
        let (status, body) = send(router(), request).await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(body["error"].as_str().unwrap().contains("application/json"));
    }

    #[tokio::test]
    async fn unknown_routes_are_json_404s_without_the_query() {
        let request = axum::http::Request::get("/nope?token=secret")
            .body(Body::empty())
            .unwrap();
        let (status, body) = send(router(), request).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["error"], "no route for GET /nope");
    }

    #[tokio::test]
    async fn internal_errors_hide_the_cause_from_the_client() {
        let error = ApiError::internal("storage", std::io::Error::other("disk on fire"));
        assert!(error.to_string().contains("disk on fire"));
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.extensions().get::<ResponseError>().is_some());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body, serde_json::json!({ "error": "internal error" }));
    }
}
