//! `agentic mcp`: serve the market to LLM agents over the Model Context
//! Protocol — the CLI face of [`agentic_agent::mcp`].
//!
//! ```text
//!   agentic mcp --key FILE [--node URL] [--mandate ID]              stdio (a desktop client launches it)
//!   agentic mcp --http 127.0.0.1:7700 --key FILE [--node URL] [--token-file F] …
//!                                                                     streamable HTTP at http://ADDR/mcp
//! ```
//!
//! The node is `--node URL`, else `$AGENTIC_NODE`, else `http://127.0.0.1:8000`.
//! In stdio mode stdout carries the protocol; logs go to stderr. Over HTTP a
//! bearer token (`--token-file F`, else `$AGENTIC_MCP_TOKEN`) guards every
//! request; without one only a loopback address is served.

use std::path::PathBuf;
use std::time::Duration;

use agentic_agent::mcp::{transport, Config, McpServer};
use agentic_client::keystore::KeyFile;
use agentic_protocol::MandateId;
use anyhow::Context;

use crate::node_cmds::NodeArgs;

#[derive(clap::Args)]
pub struct McpArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The key file the server signs with (it pays, or spends under --mandate).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Spend under this mandate: the principal pays, within its caps (the key must be its agent).
    #[arg(long, value_name = "ID")]
    mandate: Option<u64>,
    /// Serve streamable HTTP on this address (at /mcp) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    http: Option<String>,
    /// HTTP only: clients must send `Authorization: Bearer <the file's content>`
    /// (else the token in $AGENTIC_MCP_TOKEN; required beyond loopback).
    #[arg(long, value_name = "FILE", requires = "http")]
    token_file: Option<PathBuf>,
    /// Seconds to wait for a transaction to be finalized.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    tx_timeout: u64,
}

pub fn run(args: McpArgs) -> anyhow::Result<()> {
    let key = KeyFile::read(&args.key)
        .with_context(|| format!("cannot use key file {}", args.key.display()))?;
    let mut cfg = Config::new(args.node.url(), key.key);
    cfg.mandate = args.mandate.map(MandateId);
    cfg.tx_timeout = Duration::from_secs(args.tx_timeout);
    let server = McpServer::new(cfg);
    // Several sessions (HTTP) and the dispute player run at once: a multi-threaded runtime.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match args.http {
            None => {
                tracing::info!(node = %server.config().node, "MCP server on stdio");
                transport::serve_stdio(server).await?;
            }
            Some(addr) => {
                let token = match (&args.token_file, std::env::var(transport::TOKEN_ENV)) {
                    (Some(f), _) => Some(transport::BearerToken::from_file(f)?),
                    (None, Ok(t)) if !t.trim().is_empty() => Some(transport::BearerToken::new(&t)?),
                    _ => None,
                };
                let guarded = token.is_some();
                let http = transport::serve_http(server, &addr, token).await?;
                eprintln!(
                    "agentic mcp: streamable HTTP at {}{}",
                    http.url(),
                    if guarded {
                        " (bearer token required)"
                    } else {
                        " (loopback only, no token)"
                    }
                );
                http.wait().await?;
            }
        }
        Ok(())
    })
}
