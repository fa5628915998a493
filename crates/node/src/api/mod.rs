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
//! | GET | `/`, `/explorer/*` | the web explorer ([`crate::explorer`]) |

pub mod openapi;

use std::convert::Infallible;
use std::sync::Arc;

use crate::chain::{BlockRecord, ChainEvent, SharedChain, TxReceipt};
use crate::history::EntityKind;
use crate::mempool::{AdmitError, SharedMempool, Submit};
use crate::metrics::ApiMetrics;
use agentic_client::api::{
    self as types, parse_address_param, parse_hash_param, AccountView, ApiError, Block, Blocks,
    Disputes, Jobs, MempoolSize, OfferView, Offers, Page, ParamsView, Proposals, ProviderView,
    ProviderWork, Providers, Status, SubmitTx, Submitted, Supply, TxOutcome, TxPhase, TxStatus,
    WithId,
};
use agentic_client::blob_routes;
use agentic_client::blobs::BlobStore;
use agentic_protocol::hex;
use agentic_protocol::{
    Address, Amount, DisputeId, Height, JobId, MandateId, ProposalId, SignedTx,
};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt as _;

/// Limits of the API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest JSON request body (transactions).
    pub max_json_body: usize,
    /// Largest number of blocks one `/v1/blocks` call returns.
    pub max_blocks_per_page: u64,
    /// Largest number of items one list call returns.
    pub max_list: usize,
    /// The validator set `/v1/status` reports (ed25519 public keys, hex, in consensus
    /// order); the node fills it from its consensus configuration.
    pub validators: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            max_json_body: 256 << 10,
            max_blocks_per_page: 100,
            max_list: 1000,
            validators: Vec::new(),
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

impl From<AdmitError> for ApiError {
    fn from(e: AdmitError) -> ApiError {
        let code = e.code();
        let status = match e {
            AdmitError::Full => StatusCode::SERVICE_UNAVAILABLE,
            AdmitError::Duplicate => StatusCode::CONFLICT,
            AdmitError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, code, e.to_string())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// The router with every route, its body limits and JSON fallbacks; `/metrics` serves only
/// the node's summary gauges (see [`router_with_metrics`]).
pub fn router(state: ApiState) -> Router {
    router_with_metrics(state, ApiMetrics::default())
}

/// [`router`] that counts every request in `metrics` and serves, at `/metrics`, everything
/// registered in the runtime `metrics` was registered in ([`ApiMetrics::register`]).
pub fn router_with_metrics(state: ApiState, metrics: ApiMetrics) -> Router {
    let json_limit = state.config.max_json_body;
    let exposition = metrics.clone();
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
        .merge(crate::explorer::routes())
        .route(
            "/metrics",
            get(move |state: State<ApiState>| {
                let metrics = exposition.clone();
                async move { prometheus(state, metrics) }
            }),
        )
        .fallback(|| async { ApiError::not_found("route") })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// Counts a request by its route pattern (never the raw path: the label stays bounded),
/// method and status, and times it to the response head.
async fn track(
    State(metrics): State<ApiMetrics>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = match request.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    metrics.request(route, method, response.status().as_u16(), started.elapsed());
    response
}

fn read_chain(s: &ApiState) -> std::sync::RwLockReadGuard<'_, crate::chain::Chain> {
    s.chain.read().unwrap_or_else(|e| e.into_inner())
}

async fn status(State(s): State<ApiState>) -> ApiResult<Status> {
    let (chain_id, height, state_root, latest_block, supply) = {
        let c = read_chain(&s);
        let latest = c.block(c.height()).map(|b| block_view(&b));
        let meta = c.state().meta();
        let supply = Supply {
            genesis: meta.genesis_supply,
            issued: meta.issued,
            burned: meta.burned,
            total: Amount(
                meta.genesis_supply
                    .0
                    .saturating_add(meta.issued.0)
                    .saturating_sub(meta.burned.0),
            ),
            bonded: meta.total_bonded,
        };
        (c.state().chain_id(), c.height(), c.root(), latest, supply)
    };
    let (txs, bytes) = {
        let m = s.mempool.lock().unwrap_or_else(|e| e.into_inner());
        (m.len(), m.bytes())
    };
    Ok(Json(Status {
        chain_id,
        height,
        state_root,
        latest_block,
        mempool: MempoolSize {
            txs: txs as u64,
            bytes: bytes as u64,
        },
        version: env!("CARGO_PKG_VERSION").to_string(),
        supply,
        validators: s.config.validators.clone(),
    }))
}

async fn submit_tx(
    State(s): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Submitted>), ApiError> {
    let body = body?;
    let parsed: SubmitTx = serde_json::from_slice(&body).map_err(|e| {
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
        Json(Submitted {
            id,
            status: TxPhase::Pending,
        }),
    ))
}

fn parse_u64_param(s: &str, what: &'static str) -> Result<u64, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad(
            "bad_id",
            format!("{what} must be a non-negative integer: {s:?}"),
        )
    })
}

/// A receipt as the API shows it.
pub fn receipt_view(r: &TxReceipt) -> types::TxReceipt {
    types::TxReceipt {
        id: r.id,
        status: TxPhase::Finalized,
        height: r.height,
        index: r.index,
        result: TxOutcome::of(&r.result),
        events: r.events.clone(),
    }
}

async fn tx_status(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<TxStatus> {
    let id = parse_hash_param(&id)?;
    if let Some(r) = read_chain(&s).receipt(&id) {
        return Ok(Json(TxStatus::Finalized(receipt_view(&r))));
    }
    if s.mempool
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&id)
    {
        return Ok(Json(TxStatus::Pending(Submitted {
            id,
            status: TxPhase::Pending,
        })));
    }
    Err(ApiError::not_found("transaction"))
}

async fn account(State(s): State<ApiState>, Path(a): Path<String>) -> ApiResult<AccountView> {
    let address = parse_address_param(&a)?;
    let c = read_chain(&s);
    Ok(Json(AccountView {
        address,
        height: c.height(),
        is_provider: c.state().provider(&address).is_some(),
        account: c.state().account(&address),
    }))
}

fn provider_view(
    c: &crate::chain::Chain,
    a: &Address,
    p: &agentic_protocol::state::Provider,
) -> ProviderView {
    ProviderView {
        address: *a,
        reputation_ppm: c.state().reputation_ppm(a),
        bonded: c.state().account(a).bonded,
        provider: p.clone(),
    }
}

async fn providers(State(s): State<ApiState>) -> ApiResult<Providers> {
    let c = read_chain(&s);
    let providers = c
        .state()
        .providers()
        .take(s.config.max_list)
        .map(|(a, p)| provider_view(&c, a, p))
        .collect();
    Ok(Json(Providers {
        height: c.height(),
        providers,
    }))
}

async fn provider(State(s): State<ApiState>, Path(a): Path<String>) -> ApiResult<ProviderView> {
    let addr = parse_address_param(&a)?;
    let c = read_chain(&s);
    let p = c
        .state()
        .provider(&addr)
        .ok_or_else(|| ApiError::not_found("provider"))?;
    Ok(Json(provider_view(&c, &addr, p)))
}

/// The jobs in which `address` holds an open role — a replica slot or the audit of a
/// stage not yet finalized or cancelled: an audit slot drawn at commit time
/// (`stage.audit`, still to be committed) or a stage it is auditing
/// (`StagePhase::Auditing`), also in a failed job whose delivered stages are still
/// being verified — each in full with its `id`, and the open disputes (bisecting,
/// waiting for step roots, or awaiting the referee) it is a party to, each in full with its `id` (as
/// `/v1/disputes/{id}`): what a provider daemon polls to find its work.
async fn provider_work(
    State(s): State<ApiState>,
    Path(a): Path<String>,
) -> ApiResult<ProviderWork> {
    use agentic_protocol::state::DisputePhase;
    let addr = parse_address_param(&a)?;
    let c = read_chain(&s);
    // The ledger's role index: jobs where the address holds a slot or an audit of a
    // stage still open, in id order.
    let jobs = c
        .state()
        .open_roles(&addr)
        .into_iter()
        .filter_map(|id| c.state().job(id).map(|j| (id, j)))
        .take(s.config.max_list)
        .map(|(id, j)| WithId {
            id: id.0,
            item: j.clone(),
        })
        .collect();
    let disputes = c
        .state()
        .disputes()
        .filter(|(_, d)| {
            matches!(
                d.phase,
                DisputePhase::Bisecting | DisputePhase::StepRoots | DisputePhase::AwaitingReferee
            ) && (d.defendant == addr || d.challenger == addr)
        })
        .take(s.config.max_list)
        .map(|(id, d)| WithId {
            id: id.0,
            item: d.clone(),
        })
        .collect();
    Ok(Json(ProviderWork {
        height: c.height(),
        jobs,
        disputes,
    }))
}

async fn offers(State(s): State<ApiState>) -> ApiResult<Offers> {
    let c = read_chain(&s);
    let offers = c
        .state()
        .providers()
        .filter(|(_, p)| !p.retired)
        .take(s.config.max_list)
        .map(|(a, p)| OfferView {
            provider: *a,
            offer: p.offer.clone(),
            reputation_ppm: c.state().reputation_ppm(a),
            bonded: c.state().account(a).bonded,
            open_jobs: p.open,
        })
        .collect();
    Ok(Json(Offers {
        height: c.height(),
        offers,
    }))
}

type PageQuery = Result<Query<Page>, axum::extract::rejection::QueryRejection>;

/// One page of `(id, item)` pairs, ids ascending: those after `page.after`, at most
/// `page.limit` (capped by the node's `max_list`), read at the returned height.
fn list_page<V: Clone>(
    s: &ApiState,
    q: PageQuery,
    select: impl for<'a> Fn(&'a agentic_protocol::State) -> Box<dyn Iterator<Item = (u64, &'a V)> + 'a>,
) -> Result<(Height, Vec<WithId<V>>), ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let c = read_chain(s);
    let max = s.config.max_list;
    let limit = q.limit.unwrap_or(max).min(max);
    let list = select(c.state())
        .filter(|(id, _)| q.after.is_none_or(|a| *id > a))
        .take(limit)
        .map(|(id, v)| WithId {
            id,
            item: v.clone(),
        })
        .collect();
    Ok((c.height(), list))
}

async fn jobs(State(s): State<ApiState>, q: PageQuery) -> ApiResult<Jobs> {
    let (height, jobs) = list_page(&s, q, |st| Box::new(st.jobs().map(|(k, v)| (k.0, v))))?;
    Ok(Json(Jobs { height, jobs }))
}

/// `id` parsed by `parse`, then `get(state, id)` with its `id`; if the state no longer
/// has it (the ledger pruned it once finished), the node's archive of `kind`; else
/// `404 no such {what}`.
fn one<I: Copy, V: Clone + serde::de::DeserializeOwned>(
    s: &ApiState,
    raw: &str,
    what: &'static str,
    kind: EntityKind,
    make: impl Fn(u64) -> I,
    get: impl for<'a> Fn(&'a agentic_protocol::State, I) -> Option<&'a V>,
) -> ApiResult<WithId<V>> {
    let n = parse_u64_param(raw, what)?;
    let c = read_chain(s);
    let item = get(c.state(), make(n))
        .cloned()
        .or_else(|| c.archived(kind, n))
        .ok_or_else(|| ApiError::not_found(what.trim_end_matches(" id")))?;
    Ok(Json(WithId { id: n, item }))
}

async fn job(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<WithId<agentic_protocol::state::Job>> {
    one(&s, &id, "job id", EntityKind::Job, JobId, |st, id| {
        st.job(id)
    })
}

async fn disputes(State(s): State<ApiState>, q: PageQuery) -> ApiResult<Disputes> {
    let (height, disputes) = list_page(&s, q, |st| Box::new(st.disputes().map(|(k, v)| (k.0, v))))?;
    Ok(Json(Disputes { height, disputes }))
}

async fn dispute(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<WithId<agentic_protocol::state::Dispute>> {
    one(
        &s,
        &id,
        "dispute id",
        EntityKind::Dispute,
        DisputeId,
        |st, id| st.dispute(id),
    )
}

async fn proposals(State(s): State<ApiState>, q: PageQuery) -> ApiResult<Proposals> {
    let (height, proposals) =
        list_page(&s, q, |st| Box::new(st.proposals().map(|(k, v)| (k.0, v))))?;
    Ok(Json(Proposals { height, proposals }))
}

async fn proposal(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<WithId<agentic_protocol::state::Proposal>> {
    one(
        &s,
        &id,
        "proposal id",
        EntityKind::Proposal,
        ProposalId,
        |st, id| st.proposal(id),
    )
}

async fn mandate(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<WithId<agentic_protocol::state::Mandate>> {
    one(
        &s,
        &id,
        "mandate id",
        EntityKind::Mandate,
        MandateId,
        |st, id| st.mandate(id),
    )
}

async fn params(State(s): State<ApiState>) -> ApiResult<ParamsView> {
    let c = read_chain(&s);
    Ok(Json(ParamsView {
        height: c.height(),
        params: c.state().params().clone(),
    }))
}

/// A block record as the API shows it.
pub fn block_view(b: &BlockRecord) -> Block {
    Block {
        height: b.height,
        digest: agentic_protocol::Hash(b.digest),
        view: b.view,
        timestamp_ms: b.timestamp_ms,
        beacon: agentic_protocol::Hash(b.beacon),
        state_root: b.state_root,
        txs: b.tx_ids.clone(),
        succeeded: b.succeeded,
    }
}

async fn latest_block(State(s): State<ApiState>) -> ApiResult<Block> {
    let c = read_chain(&s);
    let b = c.block(c.height()).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_blocks_yet",
            "no block is finalized yet",
        )
    })?;
    Ok(Json(block_view(&b)))
}

async fn block(State(s): State<ApiState>, Path(h): Path<String>) -> ApiResult<Block> {
    let h = Height(parse_u64_param(&h, "height")?);
    let c = read_chain(&s);
    let b = c.block(h).ok_or_else(|| ApiError::not_found("block"))?;
    Ok(Json(block_view(&b)))
}

async fn blocks(
    State(s): State<ApiState>,
    q: Result<Query<types::BlockRange>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Blocks> {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    let c = read_chain(&s);
    let limit = q
        .limit
        .unwrap_or(s.config.max_blocks_per_page)
        .clamp(1, s.config.max_blocks_per_page);
    let tip = c.height().0;
    let from = q.from.unwrap_or(tip.saturating_sub(limit - 1)).max(1);
    let to = from.saturating_add(limit - 1).min(tip);
    let blocks = if from > to {
        Vec::new()
    } else {
        c.blocks(Height(from), Height(to))
            .iter()
            .map(|b| block_view(b))
            .collect()
    };
    Ok(Json(Blocks {
        height: Height(tip),
        blocks,
    }))
}

/// A chain event as the API's event feed carries it.
pub fn event_view(e: &ChainEvent) -> types::Event {
    match e {
        ChainEvent::Block(b) => types::Event::Block(block_view(b)),
        ChainEvent::Ledger { height, record } => types::Event::Ledger(types::LedgerEvent {
            height: *height,
            tx: record.tx,
            event: record.event.clone(),
        }),
    }
}

/// `?from=H` of `/v1/events`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    /// Replay the stored blocks from this height before following live.
    #[serde(default)]
    from: Option<u64>,
}

/// Server-sent events: with `from`, the stored blocks `from..=tip` first (each block's
/// ledger events, then the block), then live; without it, live only. A reader that
/// remembers the last `block` it saw resumes with `from = that + 1` and misses nothing.
async fn events(
    State(s): State<ApiState>,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl futures::Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad("bad_query", e.body_text()))?;
    // Subscribe before reading the stored blocks, so nothing falls between the two;
    // live items at heights already replayed are skipped.
    let (rx, tip) = {
        let c = read_chain(&s);
        (c.subscribe(), c.height())
    };
    // The stored blocks are read from the history a page at a time, so a replay from far
    // back holds only one page in memory.
    let replay_from = match q.from {
        Some(from) if from <= tip.0 => from.max(1),
        _ => tip.0 + 1,
    };
    let tip = if q.from.is_some() { tip } else { Height(0) };
    let chain = s.chain.clone();
    let replayed = futures::stream::unfold(replay_from, move |next| {
        let chain = chain.clone();
        async move {
            if next > tip.0 {
                return None;
            }
            let to = next.saturating_add(REPLAY_PAGE - 1).min(tip.0);
            let blocks = chain
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .blocks(Height(next), Height(to));
            if blocks.is_empty() {
                return None; // the history could not be read (logged)
            }
            let page: Vec<Result<SseEvent, Infallible>> = blocks
                .iter()
                .flat_map(|b| {
                    let height = b.height;
                    b.events
                        .iter()
                        .map(move |r| {
                            types::Event::Ledger(types::LedgerEvent {
                                height,
                                tx: r.tx,
                                event: r.event.clone(),
                            })
                        })
                        .chain(std::iter::once(types::Event::Block(block_view(b))))
                })
                .map(|ev| sse(&ev))
                .collect();
            Some((futures::stream::iter(page), to + 1))
        }
    })
    .flatten();
    let live = futures::stream::unfold(rx, move |mut rx| async move {
        loop {
            let ev = match rx.recv().await {
                Ok(e) => {
                    let ev = event_view(&e);
                    let height = match &ev {
                        types::Event::Block(b) => b.height,
                        types::Event::Ledger(l) => l.height,
                        types::Event::Lagged { .. } => Height(u64::MAX),
                    };
                    if height <= tip {
                        continue;
                    }
                    ev
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    types::Event::Lagged { missed }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            };
            return Some((sse(&ev), rx));
        }
    });
    Ok(Sse::new(replayed.chain(live)).keep_alive(KeepAlive::default()))
}

/// Blocks read from the history per step of an `/v1/events?from=` replay.
const REPLAY_PAGE: u64 = 64;

fn sse(ev: &types::Event) -> Result<SseEvent, Infallible> {
    Ok(SseEvent::default().event(ev.kind()).data(ev.data()))
}

async fn openapi_json() -> Json<serde_json::Value> {
    Json(openapi::document())
}

/// `GET /metrics`: everything the runtime holds (commonware's and ours), then the node's
/// summary gauges (`agentic_finalized_height`, `agentic_mempool_txs`,
/// `agentic_mempool_bytes`), then one `# EOF`.
fn prometheus(State(s): State<ApiState>, metrics: ApiMetrics) -> Response {
    let (height, chain_id) = {
        let c = read_chain(&s);
        (c.height().0, c.state().chain_id().0)
    };
    let (txs, bytes) = {
        let m = s.mempool.lock().unwrap_or_else(|e| e.into_inner());
        (m.len(), m.bytes())
    };
    let summary = format!(
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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.exposition(&summary),
    )
        .into_response()
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_metrics(listener, state, ApiMetrics::default(), shutdown).await
}

/// [`serve`] with [`router_with_metrics`].
pub async fn serve_with_metrics(
    listener: tokio::net::TcpListener,
    state: ApiState,
    metrics: ApiMetrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router_with_metrics(state, metrics))
        .with_graceful_shutdown(shutdown)
        .await
}
