//! Serving an [`McpServer`]: over stdio (what a desktop client launches), or
//! over streamable HTTP at `http://ADDR/mcp` (what a remote or long-running
//! client connects to).
//!
//! Streamable HTTP validates the `Host` header against loopback names by
//! default (DNS-rebinding protection); [`serve_http`] also accepts the address
//! it was bound to, so binding `0.0.0.0:7700` accepts `Host: <that ip>:7700`
//! only when the listener's own IP is used — put it behind a proxy with the
//! real host name for anything but local use.

use std::net::SocketAddr;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::ServiceExt as _;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

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
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl HttpServer {
    /// The endpoint MCP clients connect to: `http://ADDR/mcp`.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Serves until the listener fails (it runs until the process ends otherwise).
    pub async fn wait(mut self) -> Result<(), TransportError> {
        let addr = self.addr.to_string();
        let task = &mut self.task;
        match task.await {
            Ok(r) => r.map_err(|source| TransportError::Http { addr, source }),
            Err(e) => Err(TransportError::Http {
                addr,
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    /// Stops accepting connections and waits for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Binds `addr` and serves `server` at `/mcp` over streamable HTTP (every
/// session shares the one key, node client and signing lock).
pub async fn serve_http(server: McpServer, addr: &str) -> Result<HttpServer, TransportError> {
    let err = |source| TransportError::Http {
        addr: addr.to_string(),
        source,
    };
    let listener = TcpListener::bind(addr).await.map_err(err)?;
    let bound = listener.local_addr().map_err(err)?;
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    hosts.push(bound.ip().to_string());
    hosts.push(bound.to_string());
    let config = StreamableHttpServerConfig::default().with_allowed_hosts(hosts);
    let cancel = config.cancellation_token.clone();
    let service: StreamableHttpService<McpServer, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
                cancel.cancel();
            })
            .await
    });
    tracing::info!(%bound, "MCP server on streamable HTTP at /mcp");
    Ok(HttpServer {
        addr: bound,
        stop: Some(stop),
        task,
    })
}
