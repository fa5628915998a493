//! The data plane: how models, inputs and activations move between parties.
//!
//! ```text
//!   requester ──PUT blob──▶ node blob store ◀──GET (range)── provider A ──PUT activation──▶ provider B
//!                                  ▲                              │  ▲                          │
//!                                  └──── publish stage output ────┘  └────── GET blob (range) ───┘
//! ```
//!
//! Every provider serves the same content-addressed blob routes as the node
//! (`PUT/GET/HEAD /v1/blobs/{hash}`, ranged GET), plus:
//!
//! * `PUT /v1/activations/{job}/{stage}` — the previous stage's provider pushes its
//!   output here as soon as it has computed it, so the next stage starts at once
//!   instead of waiting for the chain. The bytes are stored under their blake3 hash;
//!   the receiver uses them only after checking that hash against the previous
//!   stage's result revealed on chain, so a wrong push costs a recomputation, never a
//!   wrong commitment.
//! * `GET /v1/ping` — the provider's address and Vivaldi coordinate, for RTT probes.
//! * `GET /v1/sessions/{job}/link` — an HTTP upgrade to a generation session's link
//!   (`crate::session::link`: authenticated both ways with the providers' keys).
//! * `GET /v1/sessions/{job}/tokens?from=K` — the tokens of a generation session this
//!   provider ends (its last stage), as server-sent events from index `K`: `token`
//!   events `{"index", "token"}`, then one `end` (`{"steps", "transcript"}`) or
//!   `abort` (`{"reason"}`). A subscriber may come before the session starts; past
//!   [`crate::session::MAX_WAITING_FEEDS`] feeds of sessions not running here, a
//!   subscription to another such job is refused (`503 too_many_feeds`).
//! * `GET /v1/sessions/{job}/transcript` — where the same stands now, as one JSON object
//!   ([`crate::session::FeedState`]); auditors follow the token stream to its end.
//! * `GET /v1/sessions/{job}/inputs/{stage}` — the blob holding the input rows a stage
//!   past 0 received in the session (`{"job", "stage", "blob"}`, then `GET
//!   /v1/blobs/{blob}`): its auditor checks them against the input claim the stage
//!   published with its commitment and replays only the stage's layers from them.
//!
//! No byte on this plane is trusted: a blob is accepted only if it hashes to its
//! name, and names come from the chain. That is why the plane needs no
//! authentication of its own (the chain's consensus traffic runs over commonware's
//! authenticated p2p; this plane carries only content-addressed data).
//!
//! Downloads are resumable ([`Fetcher`]): a blob is fetched in ranged chunks into a
//! `.part` file that survives restarts, from a list of sources in order (peers first,
//! the node last). A finished download is checked against its hash; on a mismatch the
//! partial file is discarded and the next source is tried.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentic_client::api::{
    ActivationStored, ApiError, Ping, SessionInputs, SessionStopping, StopSession,
};
use agentic_client::blobs::{BlobError, BlobStore};
use agentic_client::{blob_routes, Client, ClientError};
use agentic_protocol::coord::VivaldiNode;
use agentic_protocol::{Address, Hash, JobId};
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};

use crate::session::{link, FeedState, Sessions, StopError};
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};

/// Pushed activations not yet consumed: `(job, stage) → blob hash`.
pub type Inbox = Arc<Mutex<BTreeMap<(JobId, u32), Hash>>>;

/// What the data-plane server shares.
#[derive(Clone)]
pub struct PlaneState {
    /// The provider's blob store.
    pub store: Arc<BlobStore>,
    /// Pushed activations.
    pub inbox: Inbox,
    /// The provider's address (answered by `/v1/ping`).
    pub address: Address,
    /// Its current Vivaldi state.
    pub vivaldi: Arc<Mutex<VivaldiNode>>,
    /// Emulated extra round-trip time added to every ping (the demo's "far away"
    /// providers on one machine); zero in production.
    pub extra_rtt: Duration,
    /// Generation sessions: links waiting for their session, token feeds.
    pub sessions: Arc<Sessions>,
}

/// The data-plane router.
pub fn router(state: PlaneState) -> Router {
    let limit = usize::try_from(state.store.max_size())
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    Router::new()
        .route("/v1/ping", get(ping))
        .route("/v1/sessions/{job}/link", get(session_link))
        .route("/v1/sessions/{job}/tokens", get(session_tokens))
        .route("/v1/sessions/{job}/transcript", get(session_transcript))
        .route("/v1/sessions/{job}/inputs/{stage}", get(session_inputs))
        .route(
            "/v1/sessions/{job}/stop",
            post(session_stop).layer(DefaultBodyLimit::max(STOP_BODY_LIMIT)),
        )
        .route(
            "/v1/activations/{job}/{stage}",
            put(push_activation).layer(DefaultBodyLimit::max(limit)),
        )
        .with_state(state.clone())
        .merge(blob_routes::routes(state.store))
        .fallback(|| async { ApiError::not_found("route") })
}

async fn ping(State(s): State<PlaneState>) -> Json<Ping> {
    if !s.extra_rtt.is_zero() {
        tokio::time::sleep(s.extra_rtt).await;
    }
    let v = *s.vivaldi.lock().unwrap_or_else(|e| e.into_inner());
    Json(Ping {
        address: s.address,
        coord: v.coord,
        error_ppm: v.error_ppm,
    })
}

fn job_of(job: &str) -> Result<JobId, ApiError> {
    job.parse::<u64>()
        .map(JobId)
        .map_err(|_| ApiError::bad("bad_path", "expected /v1/sessions/{job id}/…"))
}

/// `GET /v1/sessions/{job}/link`: upgrades to a session link, runs the listener's half
/// of the handshake and files the link for the job's session.
async fn session_link(
    State(s): State<PlaneState>,
    Path(job): Path<String>,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Result<Response, ApiError> {
    let job = job_of(&job)?;
    let upgrade = headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok());
    if upgrade != Some(link::PROTOCOL) {
        return Err(ApiError::bad(
            "bad_upgrade",
            format!("a session link upgrades to {}", link::PROTOCOL),
        ));
    }
    let Some(nonce) = headers
        .get(link::NONCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(link::unhex32)
    else {
        return Err(ApiError::bad(
            "bad_nonce",
            format!("{} must be 64 hex digits", link::NONCE_HEADER),
        ));
    };
    let on_upgrade = hyper::upgrade::on(req);
    let sessions = s.sessions.clone();
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(e) => {
                tracing::debug!(error = %e, "session link upgrade failed");
                return;
            }
        };
        let mut io = io;
        let key = sessions.key().clone();
        match tokio::time::timeout(
            Duration::from_secs(10),
            link::accept(&mut io, &key, job, nonce),
        )
        .await
        {
            Ok(Ok(hello)) => {
                let (reader, _writer) = tokio::io::split(io);
                sessions.file(hello, Box::new(reader));
            }
            Ok(Err(e)) => tracing::warn!(job = job.0, error = %e, "session link refused"),
            Err(_) => tracing::warn!(job = job.0, "session link handshake timed out"),
        }
    });
    Ok((
        StatusCode::SWITCHING_PROTOCOLS,
        [
            (axum::http::header::CONNECTION, "upgrade"),
            (axum::http::header::UPGRADE, link::PROTOCOL),
        ],
    )
        .into_response())
}

/// Where a token subscription starts.
#[derive(serde::Deserialize)]
struct From {
    #[serde(default)]
    from: usize,
}

/// What a token stream's subscriber reads from the feed at each wake.
struct Next {
    token: Option<u32>,
    end: Option<crate::session::FeedEnd>,
    aborted: Option<String>,
}

/// `GET /v1/sessions/{job}/tokens?from=K`: the session's tokens as server-sent events.
async fn session_tokens(
    State(s): State<PlaneState>,
    Path(job): Path<String>,
    Query(q): Query<From>,
) -> Result<Response, ApiError> {
    let job = job_of(&job)?;
    let rx = s.sessions.subscribe(job).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_feeds",
            e.to_string(),
        )
    })?;
    let stream = futures::stream::unfold((rx, q.from, false), |(mut rx, next, done)| async move {
        if done {
            return None;
        }
        loop {
            // Only what this subscriber needs next (not the whole transcript per wake).
            let state = {
                let st = rx.borrow_and_update();
                Next {
                    token: st.tokens.get(next).copied(),
                    end: st.end,
                    aborted: st.aborted.clone(),
                }
            };
            if let Some(token) = state.token {
                let ev = Event::default()
                    .event("token")
                    .data(serde_json::json!({ "index": next, "token": token }).to_string());
                return Some((Ok::<_, std::convert::Infallible>(ev), (rx, next + 1, false)));
            }
            if let Some(end) = state.end {
                let ev = Event::default().event("end").data(
                    serde_json::json!({ "steps": end.steps, "transcript": end.transcript })
                        .to_string(),
                );
                return Some((Ok(ev), (rx, next, true)));
            }
            if let Some(reason) = state.aborted {
                let ev = Event::default()
                    .event("abort")
                    .data(serde_json::json!({ "reason": reason }).to_string());
                return Some((Ok(ev), (rx, next, true)));
            }
            if rx.changed().await.is_err() {
                return None;
            }
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /v1/sessions/{job}/transcript`: where the session's token stream stands.
async fn session_transcript(
    State(s): State<PlaneState>,
    Path(job): Path<String>,
) -> Result<Json<FeedState>, ApiError> {
    let job = job_of(&job)?;
    s.sessions
        .existing_feed(job)
        .map(|f| Json(f.snapshot()))
        .ok_or_else(|| ApiError::not_found("session"))
}

/// `GET /v1/sessions/{job}/inputs/{stage}`: the blob of a stage's input rows.
async fn session_inputs(
    State(s): State<PlaneState>,
    Path((job, stage)): Path<(String, String)>,
) -> Result<Json<SessionInputs>, ApiError> {
    let (Ok(job), Ok(stage)) = (job.parse::<u64>(), stage.parse::<u32>()) else {
        return Err(ApiError::bad(
            "bad_path",
            "expected /v1/sessions/{job id}/inputs/{stage index}",
        ));
    };
    let job = JobId(job);
    s.sessions
        .inputs(job, stage)
        .map(|blob| Json(SessionInputs { job, stage, blob }))
        .ok_or_else(|| ApiError::not_found("session inputs"))
}

/// Bytes a stop request may have (a signature in hex and its JSON).
const STOP_BODY_LIMIT: usize = 1024;

/// `POST /v1/sessions/{job}/stop` (`StopSession`): the job's requester stops its
/// session after the token being sampled (the last stage marks it the last, as a stop
/// token; every stage commits the steps run and is paid for them). 404 where no
/// session of the job runs its last stage, 403 for a signature that is not the
/// requester's over the job, 400 for a body that is not a `StopSession`.
async fn session_stop(
    State(s): State<PlaneState>,
    Path(job): Path<String>,
    body: Bytes,
) -> Result<Json<SessionStopping>, ApiError> {
    let job = job_of(&job)?;
    let req: StopSession = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad("bad_request", format!("not a stop request: {e}")))?;
    let signature = agentic_protocol::hex::decode(req.signature.trim())
        .map_err(|_| ApiError::bad("bad_request", "the signature is not hex"))?;
    let feed = s
        .sessions
        .existing_feed(job)
        .ok_or_else(|| ApiError::not_found("session here"))?;
    match feed.request_stop(job, &signature) {
        Ok(tokens) => {
            tracing::info!(job = job.0, tokens, "the requester stops its session");
            Ok(Json(SessionStopping { job, tokens }))
        }
        Err(StopError::NoSession) => Err(ApiError::not_found("session here")),
        Err(e @ StopError::BadSignature) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "bad_signature",
            e.to_string(),
        )),
    }
}

async fn push_activation(
    State(s): State<PlaneState>,
    Path((job, stage)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<ActivationStored>, ApiError> {
    let (Ok(job), Ok(stage)) = (job.parse::<u64>(), stage.parse::<u32>()) else {
        return Err(ApiError::bad(
            "bad_path",
            "expected /v1/activations/{job id}/{stage index}",
        ));
    };
    let hash = Hash(*blake3::hash(&body).as_bytes());
    let store = s.store.clone();
    let stored = tokio::task::spawn_blocking(move || store.put(&hash, &body)).await;
    match stored {
        Ok(Ok(_)) => {
            s.inbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert((JobId(job), stage), hash);
            Ok(Json(ActivationStored {
                hash,
                job: JobId(job),
                stage,
            }))
        }
        Ok(Err(BlobError::TooLarge { size, max })) => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "blob_too_large",
            format!("{size} bytes, the limit is {max}"),
        )),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            e.to_string(),
        )),
        Err(_) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "task failed",
        )),
    }
}

/// Why a blob could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// No source has the blob.
    #[error("no source has blob {0}")]
    NotFound(String),
    /// Every source that had it sent bytes with another hash (or failed).
    #[error("blob {hash}: {detail}")]
    Failed {
        /// The blob.
        hash: String,
        /// What each source did wrong.
        detail: String,
    },
    /// Larger than the local store accepts.
    #[error("blob {hash} is {size} bytes, the limit is {max}")]
    TooLarge {
        /// The blob.
        hash: String,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The local disk failed.
    #[error("local storage: {0}")]
    Io(#[from] std::io::Error),
    /// The local store failed.
    #[error("local blob store: {0}")]
    Store(#[from] BlobError),
}

/// Resumable, verified downloads into a [`BlobStore`].
#[derive(Clone)]
pub struct Fetcher {
    store: Arc<BlobStore>,
    partial: PathBuf,
    chunk: u64,
}

impl Fetcher {
    /// Downloads land in `store`; unfinished ones in `partial` (kept across restarts);
    /// each request asks for `chunk` bytes.
    pub fn new(store: Arc<BlobStore>, partial: PathBuf, chunk: u64) -> Result<Fetcher, FetchError> {
        std::fs::create_dir_all(&partial)?;
        Ok(Fetcher {
            store,
            partial,
            chunk: chunk.max(1),
        })
    }

    /// The local store.
    pub fn store(&self) -> &Arc<BlobStore> {
        &self.store
    }

    /// Makes sure `hash` is in the local store, fetching it from the first source that
    /// has it (in order), resuming any earlier partial download. `progress(done,
    /// total)` is called after every chunk.
    pub async fn fetch(
        &self,
        hash: &Hash,
        sources: &[Client],
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), FetchError> {
        if self.store.size(hash)?.is_some() {
            return Ok(());
        }
        let name = hash.to_hex();
        let part = self.partial.join(format!("{name}.part"));
        let mut failures = Vec::new();
        for src in sources {
            let size = match src.blob_size(hash).await {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e) => {
                    failures.push(format!("{}: {e}", src.base()));
                    continue;
                }
            };
            if size > self.store.max_size() {
                return Err(FetchError::TooLarge {
                    hash: name,
                    size,
                    max: self.store.max_size(),
                });
            }
            match self.download(src, hash, size, &part, progress).await {
                Ok(()) => return Ok(()),
                Err(e) => failures.push(format!("{}: {e}", src.base())),
            }
        }
        if failures.is_empty() {
            Err(FetchError::NotFound(name))
        } else {
            Err(FetchError::Failed {
                hash: name,
                detail: failures.join("; "),
            })
        }
    }

    async fn download(
        &self,
        src: &Client,
        hash: &Hash,
        size: u64,
        part: &std::path::Path,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<(), String> {
        let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if have > size {
            have = 0;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(part)
            .map_err(|e| e.to_string())?;
        file.set_len(have).map_err(|e| e.to_string())?;
        while have < size {
            let want = self.chunk.min(size - have);
            let bytes = src
                .get_blob_range(hash, have, want)
                .await
                .map_err(|e: ClientError| e.to_string())?;
            if bytes.is_empty() || bytes.len() as u64 > want {
                return Err(format!(
                    "asked for {want} bytes at {have}, got {}",
                    bytes.len()
                ));
            }
            file.write_all(&bytes).map_err(|e| e.to_string())?;
            have += bytes.len() as u64;
            progress(have, size);
        }
        file.sync_all().map_err(|e| e.to_string())?;
        drop(file);
        let bytes = std::fs::read(part).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(part);
        match self.store.put(hash, &bytes) {
            Ok(_) => Ok(()),
            Err(BlobError::HashMismatch { actual, .. }) => Err(format!(
                "sent bytes that hash to {actual}, not to the blob's name (refused)"
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}
