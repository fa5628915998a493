//! The node's JSON HTTP API (axum), described by an OpenAPI 3.1 document at
//! `GET /openapi.json` ([`openapi::document`]).
//!
//! Conventions:
//! - every response body is JSON, errors included: `{"error": {"code": "...",
//!   "message": "..."}}` with a stable machine-readable `code` and the HTTP status
//!   that fits (400 malformed input, 404 unknown id, 413 too large, 422 a well-formed
//!   request the node refuses, 503 full);
//! - hashes, addresses and transaction bytes are lowercase hex; amounts are decimal
//!   strings (they are `u128` base units);
//! - bodies are size-limited per route ([`ApiConfig`]) and the node keeps serving
//!   whatever a client sends.
//!
//! | method | path | what |
//! |---|---|---|
//! | GET | `/v1/status` | chain id, height, state root, mempool size |
//! | POST | `/v1/txs` | submit a signed transaction `{"tx": "<hex>"}` |
//! | GET | `/v1/txs/{id}` | receipt, or `pending` while in the mempool |
//! | GET | `/v1/accounts/{address}` | balance, nonce, bonded, withdrawable |
//! | GET | `/v1/providers`, `/v1/providers/{address}` | registered providers |
//! | GET | `/v1/providers/{address}/work` | active jobs where the provider holds a slot or an audit, its open disputes |
//! | GET | `/v1/offers` | active providers' offers with reputation |
//! | GET | `/v1/jobs`, `/v1/jobs/{id}` | jobs |
//! | GET | `/v1/disputes`, `/v1/disputes/{id}` | disputes |
//! | GET | `/v1/proposals`, `/v1/proposals/{id}` | governance proposals |
//! | GET | `/v1/mandates/{id}` | an agent mandate |
//! | GET | `/v1/params` | current protocol parameters |
//! | GET | `/v1/blocks/latest`, `/v1/blocks/{height}`, `/v1/blocks?from=&limit=` | finalized blocks |
//! | GET | `/v1/events` | server-sent events: `block` and `ledger` |
//! | PUT/GET/HEAD | `/v1/blobs/{hash}` | content-addressed blobs (blake3) |
//! | GET | `/openapi.json`, `/metrics` | API description, Prometheus metrics |

pub mod blob_routes;
pub mod openapi;

use std::convert::Infallible;
use std::sync::Arc;

use agentic_protocol::{Address, DisputeId, Hash, Height, JobId, MandateId, ProposalId, SignedTx};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::blobs::{BlobError, BlobStore};
use crate::chain::{BlockRecord, ChainEvent, SharedChain, TxReceipt};
use crate::mempool::{AdmitError, SharedMempool, Submit};
use agentic_protocol::hex;

/// Limits of the API.
#[derive(Clone, Copy, Debug)]
pub struct ApiConfig {
    /// Largest JSON request body (transactions).
    pub max_json_body: usize,
    /// Largest number of blocks one `/v1/blocks` call returns.
    pub max_blocks_per_page: u64,
    /// Largest number of items one list call returns.
    pub max_list: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_json_body: 256 << 10,
            max_blocks_per_page: 100,
            max_list: 1000,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The finalized chain.
    pub chain: SharedChain,
    /// The mempool (read for `pending` status and sizes).
    pub mempool: SharedMempool,
    /// Where submitted transactions go (local admission + gossip).
    pub submit: Arc<dyn Submit>,
    /// The blob store.
    pub blobs: Arc<BlobStore>,
    /// Limits.
    pub config: ApiConfig,
}

/// An API error: HTTP status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }
    fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> ApiError {
        let status = r.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "body_too_large", r.body_text())
        } else {
            ApiError::new(status, "bad_body", r.body_text())
        }
    }
}

impl From<AdmitError> for ApiError {
    fn from(e: AdmitError) -> ApiError {
        let code = match &e {
            AdmitError::BadSignature => "bad_signature",
            AdmitError::WrongChain { .. } => "wrong_chain",
            AdmitError::FeeTooLow { .. } => "fee_too_low",
            AdmitError::StaleNonce { .. } => "stale_nonce",
            AdmitError::NonceTooFarAhead { .. } => "nonce_too_far_ahead",
            AdmitError::CannotPayFee { .. } => "cannot_pay_fee",
            AdmitError::Duplicate => "duplicate",
            AdmitError::NonceTaken(_) => "nonce_taken",
            AdmitError::TooLarge { .. } => "tx_too_large",
            AdmitError::Full => "mempool_full",
        };
        let status = match e {
            AdmitError::Full => StatusCode::SERVICE_UNAVAILABLE,
            AdmitError::Duplicate => StatusCode::CONFLICT,
            AdmitError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, code, e.to_string())
    }
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

type ApiResult = Result<Json<Value>, ApiError>;

/// The router with every route, its body limits and JSON fallbacks.
pub fn router(state: ApiState) -> Router {
    let json_limit = state.config.max_json_body;
    Router::new()
        .route("/v1/status", get(status))
        .route(
            "/v1/txs",
            post(submit_tx).layer(DefaultBodyLimit::max(json_limit)),
        )
        .route("/v1/txs/{id}", get(tx_status))
        .route("/v1/accounts/{address}", get(account))
        .route("/v1/providers", get(providers))
        .route("/v1/providers/{address}", get(provider))
        .route("/v1/providers/{address}/work", get(provider_work))
        .route("/v1/offers", get(offers))
        .route("/v1/jobs", get(jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/disputes", get(disputes))
        .route("/v1/disputes/{id}", get(dispute))
        .route("/v1/proposals", get(proposals))
        .route("/v1/proposals/{id}", get(proposal))
        .route("/v1/mandates/{id}", get(mandate))
        .route("/v1/params", get(params))
        .route("/v1/blocks", get(blocks))
        .route("/v1/blocks/latest", get(latest_block))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/events", get(events))
        .merge(blob_routes::routes(state.blobs.clone()))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(state)
}

fn read_chain(s: &ApiState) -> std::sync::RwLockReadGuard<'_, crate::chain::Chain> {
    s.chain.read().unwrap_or_else(|e| e.into_inner())
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

async fn status(State(s): State<ApiState>) -> ApiResult {
    let (chain_id, height, root, latest) = {
        let c = read_chain(&s);
        let latest = c.block(c.height()).map(|b| block_json(&b));
        (c.state().chain_id(), c.height(), c.root(), latest)
    };
    let (txs, bytes) = {
        let m = s.mempool.lock().unwrap_or_else(|e| e.into_inner());
        (m.len(), m.bytes())
    };
    Ok(Json(json!({
        "chain_id": chain_id.0,
        "height": height.0,
        "state_root": root.to_hex(),
        "latest_block": latest,
        "mempool": {"txs": txs, "bytes": bytes},
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubmitBody {
    tx: String,
}

async fn submit_tx(
    State(s): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let body = body?;
    let parsed: SubmitBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(
            "malformed_json",
            format!("expected {{\"tx\": \"<hex>\"}}: {e}"),
        )
    })?;
    let bytes = hex::decode(parsed.tx.trim())
        .ok()
        .ok_or_else(|| ApiError::bad("bad_hex", "tx is not an even-length hex string"))?;
    let tx = SignedTx::from_bytes(&bytes)
        .map_err(|e| ApiError::bad("bad_tx_encoding", format!("tx does not decode: {e}")))?;
    let submit = s.submit.clone();
    let id = submit.submit(tx)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"id": id.to_hex(), "status": "pending"})),
    ))
}

fn parse_hash_param(s: &str) -> Result<Hash, ApiError> {
    s.parse::<Hash>()
        .map_err(|_| ApiError::bad("bad_hash", format!("not 64 hex digits: {s:?}")))
}

fn parse_address_param(s: &str) -> Result<Address, ApiError> {
    s.parse::<Address>()
        .map_err(|_| ApiError::bad("bad_address", format!("not 64 hex digits: {s:?}")))
}

fn parse_u64_param(s: &str, what: &'static str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad(
            "bad_id",
            format!("{what} must be a non-negative integer: {s:?}"),
        )
    })
}

/// A receipt as JSON.
pub fn receipt_json(r: &TxReceipt) -> Value {
    let result = match &r.result {
        Ok(()) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e.to_string(), "detail": to_value(e)}),
    };
    json!({
        "id": r.id.to_hex(),
        "status": "finalized",
        "height": r.height.0,
        "index": r.index,
        "result": result,
        "events": r.events.iter().map(to_value).collect::<Vec<_>>(),
    })
}

async fn tx_status(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = parse_hash_param(&id)?;
    if let Some(r) = read_chain(&s).receipt(&id) {
        return Ok(Json(receipt_json(r)));
    }
    if s.mempool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&id)
    {
        return Ok(Json(json!({"id": id.to_hex(), "status": "pending"})));
    }
    Err(ApiError::not_found("transaction"))
}

async fn account(State(s): State<ApiState>, Path(a): Path<String>) -> ApiResult {
    let addr = parse_address_param(&a)?;
    let c = read_chain(&s);
    let acct = c.state().account(&addr);
    let mut v = to_value(&acct);
    v["address"] = json!(addr.to_hex());
    v["height"] = json!(c.height().0);
    v["is_provider"] = json!(c.state().provider(&addr).is_some());
    Ok(Json(v))
}

fn provider_json(
    c: &crate::chain::Chain,
    a: &Address,
    p: &agentic_protocol::state::Provider,
) -> Value {
    let mut v = to_value(p);
    v["address"] = json!(a.to_hex());
    v["reputation_ppm"] = json!(c.state().reputation_ppm(a));
    v["bonded"] = to_value(&c.state().account(a).bonded);
    v
}

async fn providers(State(s): State<ApiState>) -> ApiResult {
    let c = read_chain(&s);
    let list: Vec<Value> = c
        .state()
        .providers()
        .take(s.config.max_list)
        .map(|(a, p)| provider_json(&c, a, p))
        .collect();
    Ok(Json(json!({"height": c.height().0, "providers": list})))
}

async fn provider(State(s): State<ApiState>, Path(a): Path<String>) -> ApiResult {
    let addr = parse_address_param(&a)?;
    let c = read_chain(&s);
    let p = c
        .state()
        .provider(&addr)
        .ok_or_else(|| ApiError::not_found("provider"))?;
    Ok(Json(provider_json(&c, &addr, p)))
}

/// The jobs in which `address` holds an open role — a replica slot or the audit of a
/// stage not yet finalized or cancelled: an audit slot drawn at commit time
/// (`stage.audit`, still to be committed) or a stage it is auditing
/// (`StagePhase::Auditing`), also in a failed job whose delivered stages are still
/// being verified — each in full with its `id`, and the open disputes (bisecting,
/// waiting for step roots, or awaiting the referee) it is a party to, each in full with its `id` (as
/// `/v1/disputes/{id}`): what a provider daemon polls to find its work.
async fn provider_work(State(s): State<ApiState>, Path(a): Path<String>) -> ApiResult {
    use agentic_protocol::state::DisputePhase;
    let addr = parse_address_param(&a)?;
    let c = read_chain(&s);
    // The ledger's role index: jobs where the address holds a slot or an audit of a
    // stage still open, in id order.
    let list: Vec<Value> = c
        .state()
        .open_roles(&addr)
        .into_iter()
        .filter_map(|id| c.state().job(id).map(|j| (id, j)))
        .take(s.config.max_list)
        .map(|(id, j)| {
            let mut v = to_value(j);
            v["id"] = json!(id.0);
            v
        })
        .collect();
    let disputes: Vec<Value> = c
        .state()
        .disputes()
        .filter(|(_, d)| {
            matches!(
                d.phase,
                DisputePhase::Bisecting | DisputePhase::StepRoots | DisputePhase::AwaitingReferee
            ) && (d.defendant == addr || d.challenger == addr)
        })
        .take(s.config.max_list)
        .map(|(id, d)| {
            let mut v = to_value(d);
            v["id"] = json!(id.0);
            v
        })
        .collect();
    Ok(Json(
        json!({"height": c.height().0, "jobs": list, "disputes": disputes}),
    ))
}

async fn offers(State(s): State<ApiState>) -> ApiResult {
    let c = read_chain(&s);
    let list: Vec<Value> = c
        .state()
        .providers()
        .filter(|(_, p)| !p.retired)
        .take(s.config.max_list)
        .map(|(a, p)| {
            json!({
                "provider": a.to_hex(),
                "offer": to_value(&p.offer),
                "reputation_ppm": c.state().reputation_ppm(a),
                "bonded": to_value(&c.state().account(a).bonded),
                "open_jobs": p.open,
            })
        })
        .collect();
    Ok(Json(json!({"height": c.height().0, "offers": list})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// One page of `(id, item)` pairs, ids ascending: those after `q.after`, at most
/// `q.limit` (capped by `max`), each item's JSON with its `id` added.
fn list_page<'a, V: serde::Serialize + 'a>(
    items: impl Iterator<Item = (u64, &'a V)>,
    q: &ListQuery,
    max: usize,
) -> Vec<Value> {
    let limit = q.limit.unwrap_or(max).min(max);
    items
        .filter(|(id, _)| q.after.is_none_or(|a| *id > a))
        .take(limit)
        .map(|(id, v)| {
            let mut j = to_value(v);
            j["id"] = json!(id);
            j
        })
        .collect()
}

type ListQueryResult = Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>;

/// The shared body of the list routes: parses the query, then pages `select(state)`.
fn list_route<V: serde::Serialize>(
    s: &ApiState,
    q: ListQueryResult,
    key: &str,
    select: impl for<'a> Fn(&'a agentic_protocol::State) -> Box<dyn Iterator<Item = (u64, &'a V)> + 'a>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let c = read_chain(s);
    let list = list_page(select(c.state()), &q, s.config.max_list);
    Ok(Json(json!({"height": c.height().0, key: list})))
}

async fn jobs(State(s): State<ApiState>, q: ListQueryResult) -> ApiResult {
    list_route(&s, q, "jobs", |st| {
        Box::new(st.jobs().map(|(k, v)| (k.0, v)))
    })
}

async fn job(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = JobId(parse_u64_param(&id, "job id")?);
    let c = read_chain(&s);
    let j = c
        .state()
        .job(id)
        .ok_or_else(|| ApiError::not_found("job"))?;
    let mut v = to_value(j);
    v["id"] = json!(id.0);
    Ok(Json(v))
}

async fn disputes(State(s): State<ApiState>, q: ListQueryResult) -> ApiResult {
    list_route(&s, q, "disputes", |st| {
        Box::new(st.disputes().map(|(k, v)| (k.0, v)))
    })
}

async fn dispute(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = DisputeId(parse_u64_param(&id, "dispute id")?);
    let c = read_chain(&s);
    let d = c
        .state()
        .dispute(id)
        .ok_or_else(|| ApiError::not_found("dispute"))?;
    let mut v = to_value(d);
    v["id"] = json!(id.0);
    Ok(Json(v))
}

async fn proposals(State(s): State<ApiState>, q: ListQueryResult) -> ApiResult {
    list_route(&s, q, "proposals", |st| {
        Box::new(st.proposals().map(|(k, v)| (k.0, v)))
    })
}

async fn proposal(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = ProposalId(parse_u64_param(&id, "proposal id")?);
    let c = read_chain(&s);
    let p = c
        .state()
        .proposal(id)
        .ok_or_else(|| ApiError::not_found("proposal"))?;
    let mut v = to_value(p);
    v["id"] = json!(id.0);
    Ok(Json(v))
}

async fn mandate(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult {
    let id = MandateId(parse_u64_param(&id, "mandate id")?);
    let c = read_chain(&s);
    let m = c
        .state()
        .mandate(id)
        .ok_or_else(|| ApiError::not_found("mandate"))?;
    let mut v = to_value(m);
    v["id"] = json!(id.0);
    Ok(Json(v))
}

async fn params(State(s): State<ApiState>) -> ApiResult {
    let c = read_chain(&s);
    Ok(Json(json!({
        "height": c.height().0,
        "params": to_value(c.state().params()),
    })))
}

/// A block record as JSON.
pub fn block_json(b: &BlockRecord) -> Value {
    json!({
        "height": b.height.0,
        "digest": hex::encode(&b.digest),
        "view": b.view,
        "timestamp_ms": b.timestamp_ms,
        "beacon": hex::encode(&b.beacon),
        "state_root": b.state_root.to_hex(),
        "txs": b.tx_ids.iter().map(Hash::to_hex).collect::<Vec<_>>(),
        "succeeded": b.succeeded,
    })
}

async fn latest_block(State(s): State<ApiState>) -> ApiResult {
    let c = read_chain(&s);
    let b = c.block(c.height()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_blocks_yet",
            "no block is finalized yet",
        )
    })?;
    Ok(Json(block_json(&b)))
}

async fn block(State(s): State<ApiState>, Path(h): Path<String>) -> ApiResult {
    let h = Height(parse_u64_param(&h, "height")?);
    let c = read_chain(&s);
    let b = c.block(h).ok_or_else(|| ApiError::not_found("block"))?;
    Ok(Json(block_json(&b)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlocksQuery {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

async fn blocks(
    State(s): State<ApiState>,
    q: Result<Query<BlocksQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let c = read_chain(&s);
    let limit = q
        .limit
        .unwrap_or(s.config.max_blocks_per_page)
        .clamp(1, s.config.max_blocks_per_page);
    let tip = c.height().0;
    let from = q.from.unwrap_or(tip.saturating_sub(limit - 1)).max(1);
    let to = from.saturating_add(limit - 1).min(tip);
    let list: Vec<Value> = if from > to {
        Vec::new()
    } else {
        c.blocks(Height(from), Height(to))
            .map(|b| block_json(b))
            .collect()
    };
    Ok(Json(json!({"height": tip, "blocks": list})))
}

fn event_json(e: &ChainEvent) -> (&'static str, Value) {
    match e {
        ChainEvent::Block(b) => ("block", block_json(b)),
        ChainEvent::Ledger { height, record } => (
            "ledger",
            json!({"height": height.0, "tx": record.tx, "event": to_value(&record.event)}),
        ),
    }
}

async fn events(
    State(s): State<ApiState>,
) -> Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = read_chain(&s).subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let ev = match rx.recv().await {
            Ok(e) => {
                let (kind, data) = event_json(&e);
                SseEvent::default().event(kind).data(data.to_string())
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => SseEvent::default()
                .event("lagged")
                .data(json!({"missed": n}).to_string()),
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(ev), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn openapi_json() -> Json<Value> {
    Json(openapi::document())
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let (height, chain_id) = {
        let c = read_chain(&s);
        (c.height().0, c.state().chain_id().0)
    };
    let (txs, bytes) = {
        let m = s.mempool.lock().unwrap_or_else(|e| e.into_inner());
        (m.len(), m.bytes())
    };
    let body = format!(
        "# HELP agentic_finalized_height Height of the last finalized block.\n\
         # TYPE agentic_finalized_height gauge\n\
         agentic_finalized_height{{chain_id=\"{chain_id}\"}} {height}\n\
         # HELP agentic_mempool_txs Transactions waiting in the mempool.\n\
         # TYPE agentic_mempool_txs gauge\n\
         agentic_mempool_txs {txs}\n\
         # HELP agentic_mempool_bytes Encoded bytes waiting in the mempool.\n\
         # TYPE agentic_mempool_bytes gauge\n\
         agentic_mempool_bytes {bytes}\n"
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
