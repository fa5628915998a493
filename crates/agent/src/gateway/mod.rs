//! An OpenAI-compatible HTTP gateway: any OpenAI client (the `openai` SDKs,
//! `async-openai`, LangChain, curl) buys generations and embeddings on the market
//! without knowing it is one.
//!
//! ```text
//!  client ── Authorization: Bearer T ──▶ gateway (one key, optionally one mandate)
//!   POST /v1/chat/completions  messages ─ chat template ─▶ prompt ─┐
//!   POST /v1/completions       prompt text ────────────────────────┤ GenerationInput
//!                                                                  ▼
//!        Requester::prepare ─▶ submit (one signing lock) ─▶ stream(job) ─▶ tokens
//!          │ stream: true: each token decoded (TextStream) ─▶ `data: chunk` … `data: [DONE]`
//!          └ otherwise: all tokens ─▶ wait until settled ─▶ bill ─▶ one JSON response
//!   POST /v1/embeddings        texts ─▶ a `minilm` inference job ─▶ settled ─▶ result rows
//!   GET  /v1/models            smollm2-135m, minilm
//! ```
//!
//! Every request that runs a model is one market job, signed with the gateway's key
//! (spending under its mandate when one is set). Each response names it:
//!
//! - `x-agentic-job`: the job id.
//! - `x-agentic-cost`: base units. A non-streaming response is sent once the job is
//!   settled, with what the ledger paid for it ([`crate::requester::Requester::bill`]'s
//!   `paid`). A stream's headers leave before the first token, so there it is the
//!   escrow locked at submission: the most the job can cost (the unspent rest is
//!   refunded when it settles). `x-agentic-settled` says which (`true` / `false`); a
//!   job that does not settle within [`Config::job_timeout`] also reports its escrow.
//!
//! # Decisions
//!
//! - **Auth**: every route needs `Authorization: Bearer <token>` when a token is set
//!   (the rules and helpers of `agentic mcp --http`: [`crate::mcp::transport::BearerToken`],
//!   compared in constant time); without one only a loopback address is served. A
//!   missing or wrong token is 401 `invalid_api_key`.
//! - **Chat**: `system` (and `developer`, read as `system`), `user` and `assistant`
//!   messages with text content (a string or `text` parts) are rendered with the model's
//!   chat template, which opens the assistant's turn; the rendered text is the job's
//!   prompt as is. Tool calls, images and `n > 1` are refused (400).
//! - **Sampling**: `temperature` 0 is greedy; otherwise seeded sampling with the
//!   request's `seed` (default 0), `temperature` (default 1, at most 2), `top_p`
//!   (default 1) and no top-k cut — OpenAI has none; the non-standard `top_k` field
//!   sets one. The same request gives the same text (the market's sampling is
//!   deterministic), unlike OpenAI's.
//! - **Length**: `max_tokens` (or `max_completion_tokens`) defaults to 64; 0, or a
//!   prompt plus `max_tokens` beyond the model's context, is 400.
//! - **Stop**: each `stop` string must be exactly one token of the model's vocabulary
//!   (`"\n"`, `"."`); it is added to the model's end tokens. Longer strings are 400:
//!   the ledger stops a generation on tokens, not text. As with OpenAI the stop token's
//!   text is not part of the reply (but it was generated, so it is counted in
//!   `completion_tokens` and billed). `finish_reason` is `stop` when a stop token ended
//!   the generation, `length` at `max_tokens`.
//! - **Usage**: `prompt_tokens` counts the prompt as the model reads it (BOS and chat
//!   template included); a stream sends it in a last chunk when
//!   `stream_options.include_usage` is set.
//! - **A client that goes away** mid-stream does not cancel the job: it runs to its
//!   end and settles on its own (the chunks are dropped).
//! - **Embeddings**: `minilm` (alias `all-MiniLM-L6-v2`), one job for all inputs,
//!   float vectors only (384 wide, L2-normalized); token-id inputs are refused.
//! - **Errors** are OpenAI's JSON `{"error": {"message", "type", "param", "code"}}`:
//!   400 `invalid_request_error` (malformed JSON, bad messages, parameters out of
//!   range), 401, 404 `model_not_found`, 402 `insufficient_quota` (the payer cannot
//!   cover the escrow), 502 `market_error` (the market refused or failed the job).

mod handlers;
pub mod types;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentic_client::Client;
use agentic_compute::llm::generate::LlmModel;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Amount, MandateId};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use commonware_cryptography::ed25519::PrivateKey;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, OnceCell};

use crate::mcp::transport::{bearer_refusal, BearerToken};
use crate::requester::{JobRequest, Requester};

pub use types::ApiError;

/// The generation model served.
pub const CHAT_MODEL: &str = "smollm2-135m";
/// The embedding model served (and its alias).
pub const EMBEDDING_MODEL: &str = "minilm";
/// `minilm`'s other name.
pub const EMBEDDING_ALIAS: &str = "all-MiniLM-L6-v2";
/// `max_tokens` when a request gives none.
pub const DEFAULT_MAX_TOKENS: u32 = 64;
/// The environment variable `agentic gateway` reads a token from.
pub const TOKEN_ENV: &str = "AGENTIC_GATEWAY_TOKEN";

/// How the gateway buys.
#[derive(Clone)]
pub struct Config {
    /// The node's API URL.
    pub node: String,
    /// The key that signs every job (and pays, without a mandate).
    pub key: PrivateKey,
    /// Spend under this mandate (`JobRequest::mandate`).
    pub mandate: Option<MandateId>,
    /// Pipeline stages per job.
    pub stages: usize,
    /// Highest price per mega-op paid.
    pub max_price: Amount,
    /// Blocks a provider has to deliver.
    pub deadline: u64,
    /// How results are checked before payout.
    pub verification: VerificationLevel,
    /// How long one request waits for its tokens, and again for its job to settle.
    pub job_timeout: Duration,
    /// Required from every client as `Authorization: Bearer <token>`.
    pub token: Option<BearerToken>,
}

impl Config {
    /// Buying with `key` from the node at `node`: no mandate, one stage,
    /// [`JobRequest::DEFAULT_MAX_PRICE`], a 400-block deadline, optimistic
    /// verification, 300 s per job, no token.
    pub fn new(node: impl Into<String>, key: PrivateKey) -> Config {
        Config {
            node: node.into(),
            key,
            mandate: None,
            stages: 1,
            max_price: JobRequest::DEFAULT_MAX_PRICE,
            deadline: 400,
            verification: VerificationLevel::Optimistic,
            job_timeout: Duration::from_secs(300),
            token: None,
        }
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("node", &self.node)
            .field("mandate", &self.mandate)
            .field("stages", &self.stages)
            .field("max_price", &self.max_price)
            .field("guarded", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

/// The gateway's shared state (cheap to clone).
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    requester: Requester,
    /// Submissions are signed one at a time (each takes the next nonce).
    signing: Mutex<()>,
    /// The chat model, loaded on first use: its tokenizer, template and context.
    llm: OnceCell<Arc<LlmModel>>,
}

impl Gateway {
    /// A gateway buying as `config` says.
    pub fn new(config: Config) -> Gateway {
        let mut requester = Requester::new(Client::new(config.node.clone()), config.key.clone());
        requester.poll_interval = Duration::from_millis(100);
        Gateway {
            inner: Arc::new(Inner {
                config,
                requester,
                signing: Mutex::new(()),
                llm: OnceCell::new(),
            }),
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The routes, behind the bearer-token check when a token is set.
    pub fn router(&self) -> Router {
        let routes = Router::new()
            .route("/v1/models", get(handlers::models))
            .route("/v1/chat/completions", post(handlers::chat))
            .route("/v1/completions", post(handlers::completions))
            .route("/v1/embeddings", post(handlers::embeddings))
            .fallback(handlers::not_found);
        routes
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                require_token,
            ))
            .with_state(self.clone())
    }
}

/// 401 in OpenAI's format unless the request carries the token (when one is set).
async fn require_token(State(g): State<Gateway>, req: Request, next: Next) -> Response {
    if let Some(token) = &g.inner.config.token {
        if let Some(reason) = bearer_refusal(req.headers(), token, "this gateway") {
            return ApiError::unauthorized(reason).into_response();
        }
    }
    next.run(req).await
}

/// A random token: 32 bytes from the OS generator as hex (`agentic gateway` makes one
/// when none is given and prints it once).
pub fn generate_token() -> String {
    use rand::RngCore as _;
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Why the gateway could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listener could not be bound or failed.
    #[error("gateway at {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// Asked to serve beyond loopback without a token.
    #[error("refusing to serve the gateway on {addr} without a bearer token: it is not a loopback address, so anyone who can reach it could spend with this key")]
    Unguarded {
        /// The bound address.
        addr: SocketAddr,
    },
}

/// A running gateway.
#[derive(Debug)]
pub struct GatewayServer {
    /// The bound address.
    pub addr: SocketAddr,
    running: crate::serve::Running,
}

impl GatewayServer {
    /// The base URL OpenAI clients are given: `http://ADDR/v1`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Serves until the listener fails.
    pub async fn wait(self) -> Result<(), GatewayError> {
        let addr = self.addr.to_string();
        self.running
            .wait()
            .await
            .map_err(|source| GatewayError::Http { addr, source })
    }

    /// Stops accepting connections and waits for the server to finish.
    pub async fn shutdown(self) {
        self.running.shutdown().await
    }
}

/// Binds `addr` and serves `gateway` there. Without a token only a loopback address
/// is served ([`GatewayError::Unguarded`]).
pub async fn serve(gateway: Gateway, addr: &str) -> Result<GatewayServer, GatewayError> {
    let err = |source| GatewayError::Http {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    if !bound.ip().is_loopback() && gateway.config().token.is_none() {
        return Err(GatewayError::Unguarded { addr: bound });
    }
    let running = crate::serve::Running::start(listener, gateway.router(), || {}).map_err(err)?;
    tracing::info!(%bound, "OpenAI-compatible gateway at /v1");
    Ok(GatewayServer {
        addr: bound,
        running,
    })
}
