//! The blob routes, `PUT/GET/HEAD /v1/blobs/{hash}`, shared by the node's API and
//! the provider's data plane (the same content-addressed protocol on both, so one
//! client fetches from either).
//!
//! * `PUT` stores the body if it hashes to `{hash}` (422 `hash_mismatch` otherwise,
//!   413 `blob_too_large` above the store's limit); storing a present blob is a no-op.
//! * `GET` returns the bytes; with `Range: bytes=START-` or `bytes=START-END` it
//!   returns `206 Partial Content` with `Content-Range` — how a download resumes.
//!   An unsatisfiable range is `416`.
//! * `HEAD` returns the size in `Content-Length` (404 if absent).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::api::{parse_hash_param, ApiError, BlobStored};
use crate::blobs::{BlobError, BlobStore};

/// The blob routes over `store`, for any router state.
pub fn routes<S: Clone + Send + Sync + 'static>(store: Arc<BlobStore>) -> Router<S> {
    let limit = usize::try_from(store.max_size())
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    Router::new()
        .route(
            "/v1/blobs/{hash}",
            get(blob_get)
                .head(blob_head)
                .put(blob_put)
                .layer(DefaultBodyLimit::max(limit)),
        )
        .with_state(store)
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> ApiError {
        match e {
            BlobError::HashMismatch { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "hash_mismatch",
                e.to_string(),
            ),
            BlobError::TooLarge { .. } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "blob_too_large",
                e.to_string(),
            ),
            BlobError::BadName(_) => ApiError::bad("bad_hash", e.to_string()),
            BlobError::Io(_) => {
                tracing::error!(error = %e, "blob store");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage",
                    "blob store failure",
                )
            }
        }
    }
}

fn internal() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "blob task failed",
    )
}

async fn blob_put(
    State(store): State<Arc<BlobStore>>,
    Path(h): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<BlobStored>), ApiError> {
    let hash = parse_hash_param(&h)?;
    let max = store.max_size();
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "blob_too_large",
                format!("the limit is {max} bytes"),
            )
        } else {
            ApiError::from(r)
        }
    })?;
    let len = body.len();
    let new = tokio::task::spawn_blocking(move || store.put(&hash, &body))
        .await
        .map_err(|_| internal())??;
    Ok((
        if new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(BlobStored {
            hash,
            size: len as u64,
            new,
        }),
    ))
}

/// Parses `bytes=START-` / `bytes=START-END` (one range; END inclusive).
fn parse_range(v: &HeaderValue, size: u64) -> Result<(u64, u64), ApiError> {
    let unsatisfiable = || {
        ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "bad_range",
            format!("the blob has {size} bytes; ranges are `bytes=START-` or `bytes=START-END`"),
        )
    };
    let s = v.to_str().map_err(|_| unsatisfiable())?;
    let spec = s.strip_prefix("bytes=").ok_or_else(unsatisfiable)?;
    let (a, b) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let start: u64 = a.trim().parse().map_err(|_| unsatisfiable())?;
    let end: u64 = if b.trim().is_empty() {
        size.saturating_sub(1)
    } else {
        b.trim()
            .parse::<u64>()
            .map_err(|_| unsatisfiable())?
            .min(size.saturating_sub(1))
    };
    if start >= size || end < start {
        return Err(unsatisfiable());
    }
    Ok((start, end))
}

async fn blob_get(
    State(store): State<Arc<BlobStore>>,
    Path(h): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hash = parse_hash_param(&h)?;
    let range = headers.get(header::RANGE).cloned();
    let (status, bytes, content_range) = tokio::task::spawn_blocking(move || {
        let Some(size) = store.size(&hash)? else {
            return Ok(None);
        };
        let Some(r) = range else {
            return Ok(store.get(&hash)?.map(|b| (StatusCode::OK, b, None)));
        };
        let (start, end) = match parse_range(&r, size) {
            Ok(x) => x,
            Err(e) => return Err(e),
        };
        let part = store.read_range(&hash, start, end - start + 1)?;
        Ok(part.map(|b| {
            (
                StatusCode::PARTIAL_CONTENT,
                b,
                Some(format!("bytes {start}-{end}/{size}")),
            )
        }))
    })
    .await
    .map_err(|_| internal())??
    .ok_or_else(|| ApiError::not_found("blob"))?;
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(cr) = content_range {
        if let Ok(v) = HeaderValue::from_str(&cr) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok((status, h, bytes).into_response())
}

async fn blob_head(
    State(store): State<Arc<BlobStore>>,
    Path(h): Path<String>,
) -> Result<Response, ApiError> {
    let hash = parse_hash_param(&h)?;
    match store.size(&hash)? {
        Some(n) => Ok((
            [
                (header::CONTENT_LENGTH, n.to_string()),
                (header::ACCEPT_RANGES, "bytes".to_string()),
            ],
            StatusCode::OK,
        )
            .into_response()),
        None => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}
