//! Serving an [`McpServer`]: over stdio (what a desktop client launches), or
//! over streamable HTTP at `http://ADDR/mcp` (what a remote or long-running
//! client connects to).
//!
//! # Who may call the HTTP endpoint
//!
//! The server signs with its key (and spends under its mandate) for whoever
//! calls a tool, so the HTTP endpoint is never open to anyone:
//!
//! ```text
//!   request ─▶ Authorization: Bearer <token>?  (when a token is set)
//!                 ├─ missing / not Bearer ─▶ 401 {"error":"unauthorized","reason":"…"}
//!                 ├─ wrong token          ─▶ 401 {"error":"unauthorized","reason":"…"}
//!                 └─ right token ─▶ Host check ─▶ rmcp's streamable HTTP service
//! ```
//!
//! 1. **A token, or loopback only.** [`serve_http`] refuses to start on an
//!    address that is not loopback (`0.0.0.0`, a LAN address) without a
//!    [`BearerToken`]. On loopback a token is optional (other local users and
//!    local processes can still call it without one: set one on shared machines).
//! 2. **Constant-time comparison.** The presented token and the configured one
//!    are both hashed (blake3, a domain of their own) and the two digests
//!    compared with a loop that never exits early, so neither the response time
//!    nor its length reveals how much of a guess was right.
//! 3. **Host header.** On loopback the `Host` header must be a loopback name or
//!    the bound address (DNS-rebinding protection). On a non-loopback address
//!    (which requires a token) any `Host` is accepted: the token is the guard,
//!    and a proxy in front may use any name. Use TLS (a proxy) when the token
//!    crosses a network.
//!
//! The CLI reads the token from `--token-file FILE` or `$AGENTIC_MCP_TOKEN`
//! ([`BearerToken::from_file`], [`BearerToken::new`]); clients send
//! `Authorization: Bearer <token>` on every request.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use agentic_protocol::Hash;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt as _;
use tokio::net::TcpListener;

use super::McpServer;

/// Why serving stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The HTTP listener could not be bound or failed.
    #[error("MCP over HTTP at {addr}: {source}")]
    Http {
        /// The address.
        addr: String,
        /// The error.
        source: std::io::Error,
    },
    /// The stdio session could not start or ended with an error.
    #[error("MCP over stdio: {0}")]
    Stdio(String),
    /// Asked to serve HTTP beyond loopback without a token.
    #[error("refusing to serve MCP over HTTP on {addr} without a bearer token: it is not a loopback address, so anyone who can reach it could spend with this key — give a token (--token-file FILE or $AGENTIC_MCP_TOKEN) or bind 127.0.0.1")]
    Unguarded {
        /// The bound address.
        addr: SocketAddr,
    },
    /// The token is unusable.
    #[error("bearer token: {0}")]
    BadToken(String),
}

/// The secret an HTTP client must present as `Authorization: Bearer <token>`.
/// Only its digest is kept; `Debug` never shows it.
#[derive(Clone)]
pub struct BearerToken {
    digest: Hash,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(…)")
    }
}

/// The environment variable the CLI reads a token from.
pub const TOKEN_ENV: &str = "AGENTIC_MCP_TOKEN";

const TOKEN_DOMAIN: &str = "agentic mcp bearer token v1";

impl BearerToken {
    /// Shortest token accepted (characters).
    pub const MIN_LEN: usize = 16;

    /// A token from its text (surrounding whitespace trimmed): at least
    /// [`Self::MIN_LEN`] visible ASCII characters, no spaces (an HTTP header
    /// value carries it as is).
    pub fn new(text: &str) -> Result<BearerToken, TransportError> {
        let t = text.trim();
        if t.len() < Self::MIN_LEN {
            return Err(TransportError::BadToken(format!(
                "it has {} characters; use at least {} (e.g. `openssl rand -hex 32`)",
                t.len(),
                Self::MIN_LEN
            )));
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TransportError::BadToken(
                "use visible ASCII characters only, without spaces".into(),
            ));
        }
        Ok(BearerToken {
            digest: Self::digest_of(t.as_bytes()),
        })
    }

    /// A token read from a file (its whole content, trimmed).
    pub fn from_file(path: &Path) -> Result<BearerToken, TransportError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            TransportError::BadToken(format!("cannot read {}: {e}", path.display()))
        })?;
        BearerToken::new(&text)
    }

    fn digest_of(bytes: &[u8]) -> Hash {
        Hash::digest(TOKEN_DOMAIN, &[bytes])
    }

    /// Whether `presented` is this token, in time independent of where (or
    /// whether) it differs.
    pub fn matches(&self, presented: &[u8]) -> bool {
        let theirs = Self::digest_of(presented);
        let diff = self
            .digest
            .0
            .iter()
            .zip(theirs.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(diff) == 0
    }
}

/// 401 with a JSON reason and a `WWW-Authenticate: Bearer` challenge.
fn unauthorized(reason: &str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [
            (header::WWW_AUTHENTICATE, "Bearer realm=\"agentic-mcp\""),
            (header::CONTENT_TYPE, "application/json"),
        ],
        serde_json::json!({"error": "unauthorized", "reason": reason}).to_string(),
    )
        .into_response()
}

/// Lets a request through only with `Authorization: Bearer <the token>`.
async fn require_token(token: Arc<BearerToken>, req: Request, next: Next) -> Response {
    match bearer_refusal(req.headers(), &token, "this MCP endpoint") {
        Some(reason) => unauthorized(&reason),
        None => next.run(req).await,
    }
}

/// Why a request's `Authorization` header does not carry `token` (`None`: it does).
/// `what` names the endpoint in the reason. Shared with the OpenAI-compatible gateway
/// ([`crate::gateway`]), which answers in OpenAI's error format.
pub(crate) fn bearer_refusal(
    headers: &axum::http::HeaderMap,
    token: &BearerToken,
    what: &str,
) -> Option<String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Some(format!(
            "{what} needs `Authorization: Bearer <token>`; no Authorization header was sent"
        ));
    };
    let v = value.as_bytes().trim_ascii();
    let (scheme, presented) = match v.iter().position(|b| *b == b' ') {
        Some(i) => (&v[..i], v[i + 1..].trim_ascii()),
        None => (v, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Some("the Authorization header must use the Bearer scheme".into());
    }
    if presented.is_empty() {
        return Some("the Authorization header carries no token after `Bearer`".into());
    }
    if !token.matches(presented) {
        return Some("wrong bearer token".into());
    }
    None
}

/// Serves `server` on this process's stdin/stdout until the client closes it.
/// Log to stderr only: stdout carries the protocol.
pub async fn serve_stdio(server: McpServer) -> Result<(), TransportError> {
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| TransportError::Stdio(e.to_string()))?;
    running
        .waiting()
        .await
        .map_err(|e| TransportError::Stdio(e.to_string()))?;
    Ok(())
}

/// A running streamable-HTTP MCP endpoint.
#[derive(Debug)]
pub struct HttpServer {
    /// The bound address.
    pub addr: SocketAddr,
    running: crate::serve::Running,
}

impl HttpServer {
    /// The endpoint MCP clients connect to: `http://ADDR/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Serves until the listener fails (it runs until the process ends otherwise).
    pub async fn wait(self) -> Result<(), TransportError> {
        let addr = self.addr.to_string();
        self.running
            .wait()
            .await
            .map_err(|source| TransportError::Http { addr, source })
    }

    /// Stops accepting connections and waits for the server to finish.
    pub async fn shutdown(self) {
        self.running.shutdown().await
    }
}

/// Binds `addr` and serves `server` at `/mcp` over streamable HTTP (every
/// session shares the one key, node client and signing lock). With a `token`,
/// every request must carry it; without one, only a loopback address is served
/// ([`TransportError::Unguarded`] otherwise).
pub async fn serve_http(
    server: McpServer,
    addr: &str,
    token: Option<BearerToken>,
) -> Result<HttpServer, TransportError> {
    let err = |source| TransportError::Http {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    let loopback = bound.ip().is_loopback();
    if !loopback && token.is_none() {
        return Err(TransportError::Unguarded { addr: bound });
    }
    let config = if loopback {
        let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
        hosts.push(bound.ip().to_string());
        hosts.push(bound.to_string());
        StreamableHttpServerConfig::default().with_allowed_hosts(hosts)
    } else {
        StreamableHttpServerConfig::default().disable_allowed_hosts()
    };
    let cancel = config.cancellation_token.clone();
    let service: StreamableHttpService<McpServer, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let mut router = axum::Router::new().nest_service("/mcp", service);
    let guarded = token.is_some();
    if let Some(token) = token {
        let token = Arc::new(token);
        router = router.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| require_token(token.clone(), req, next),
        ));
    }
    let running =
        crate::serve::Running::start(listener, router, move || cancel.cancel()).map_err(err)?;
    tracing::info!(%bound, guarded, "MCP server on streamable HTTP at /mcp");
    Ok(HttpServer {
        addr: bound,
        running,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_whole() {
        let t = BearerToken::new("  0123456789abcdef0123\n").unwrap();
        assert!(t.matches(b"0123456789abcdef0123"));
        assert!(!t.matches(b"0123456789abcdef012"));
        assert!(!t.matches(b"0123456789abcdef01234"));
        assert!(!t.matches(b""));
        assert!(BearerToken::new("short").is_err());
        assert!(BearerToken::new("has a space in the middle").is_err());
        assert_eq!(format!("{t:?}"), "BearerToken(…)");
    }
}
