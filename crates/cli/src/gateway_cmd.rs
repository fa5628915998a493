//! `agentic gateway`: an OpenAI-compatible HTTP API in front of the market — the CLI
//! face of [`agentic_agent::gateway`].
//!
//! ```text
//!   agentic gateway --key FILE [--mandate ID] [--listen 127.0.0.1:8080] [--token-file F]
//!                   [--stages K] [--max-price P] [--node URL]
//!   OpenAI clients: base URL http://ADDR/v1, API key = the token
//! ```
//!
//! The token is `--token-file F`, else `$AGENTIC_GATEWAY_TOKEN`, else a fresh random
//! one printed once to stderr: every request must carry it as
//! `Authorization: Bearer <token>` (what OpenAI clients send as their API key).

use std::path::PathBuf;
use std::time::Duration;

use agentic_agent::gateway::{self, Gateway};
use agentic_agent::mcp::transport::BearerToken;
use agentic_client::keystore::KeyFile;
use agentic_protocol::{Amount, MandateId};
use anyhow::Context;

use crate::node_cmds::NodeArgs;

#[derive(clap::Args)]
pub struct GatewayArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The key file every job is signed with (it pays, or spends under --mandate).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// Spend under this mandate: the principal pays, within its caps (the key must be its agent).
    #[arg(long, value_name = "ID")]
    mandate: Option<u64>,
    /// The address to serve on (the API is at http://ADDR/v1).
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    listen: String,
    /// Clients must send `Authorization: Bearer <the file's content>` (else the token
    /// in $AGENTIC_GATEWAY_TOKEN, else a random one printed at start).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Pipeline stages per job (layer ranges, one provider each).
    #[arg(long, default_value_t = 1, value_name = "K")]
    stages: usize,
    /// Highest price paid per mega-op, base units.
    #[arg(long, default_value_t = 100, value_name = "P")]
    max_price: u128,
    /// Seconds one request waits for its tokens, and again for its job to settle.
    #[arg(long, default_value_t = 300, value_name = "SECS")]
    job_timeout: u64,
}

pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let key = KeyFile::read(&args.key)
        .with_context(|| format!("cannot use key file {}", args.key.display()))?;
    let (token, generated) = match (&args.token_file, std::env::var(gateway::TOKEN_ENV)) {
        (Some(f), _) => (BearerToken::from_file(f)?, None),
        (None, Ok(t)) if !t.trim().is_empty() => (BearerToken::new(&t)?, None),
        _ => {
            let t = gateway::generate_token();
            (BearerToken::new(&t)?, Some(t))
        }
    };
    let mut cfg = gateway::Config::new(args.node.url(), key.key);
    cfg.mandate = args.mandate.map(MandateId);
    cfg.stages = args.stages;
    cfg.max_price = Amount(args.max_price);
    cfg.job_timeout = Duration::from_secs(args.job_timeout);
    cfg.token = Some(token);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let server = gateway::serve(Gateway::new(cfg), &args.listen).await?;
        eprintln!(
            "agentic gateway: OpenAI-compatible API at {} (bearer token required)",
            server.url()
        );
        if let Some(t) = generated {
            eprintln!("agentic gateway: generated token (use it as the API key): {t}");
        }
        server.wait().await?;
        Ok(())
    })
}
