//! `agentic query`: read the node's finalized chain (one `GET /v1/...` per command),
//! follow its event stream, and move blobs in and out of its blob store.
//!
//! Lists print as tables, single items as indented `key: value` lines, and
//! `--json` prints the API's JSON unchanged (one JSON object per line for
//! `events`).

use std::io::Write as _;
use std::path::PathBuf;

use agentic_node::keystore::KeyFile;
use agentic_protocol::hex;
use agentic_protocol::{Address, Hash};
use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::{json, Value};

use super::{event_line, render, scalar, table, NodeArgs};

#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Print the API's JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    what: What,
}

/// Pagination of the id-keyed lists.
#[derive(clap::Args)]
struct Page {
    /// Only ids greater than this.
    #[arg(long)]
    after: Option<u64>,
    /// At most this many.
    #[arg(long)]
    limit: Option<u64>,
}

impl Page {
    fn query(&self) -> String {
        let mut q = Vec::new();
        if let Some(a) = self.after {
            q.push(format!("after={a}"));
        }
        if let Some(l) = self.limit {
            q.push(format!("limit={l}"));
        }
        if q.is_empty() {
            String::new()
        } else {
            format!("?{}", q.join("&"))
        }
    }
}

#[derive(Subcommand)]
enum What {
    /// Chain id, height, state root, latest block, mempool.
    Status,
    /// An account: balance, nonce, bonded, withdrawable.
    Account {
        /// The address, or a key file.
        #[arg(value_parser = super::address, required_unless_present = "key")]
        address: Option<Address>,
        /// The account of this key file.
        #[arg(long, value_name = "FILE", conflicts_with = "address")]
        key: Option<PathBuf>,
    },
    /// Registered providers.
    Providers,
    /// One provider.
    Provider {
        /// The address, or a key file.
        #[arg(value_parser = super::address)]
        address: Address,
    },
    /// Active providers' offers with reputation.
    Offers,
    /// Jobs.
    Jobs(Page),
    /// One job.
    Job {
        /// The job id.
        id: u64,
    },
    /// Disputes.
    Disputes(Page),
    /// One dispute.
    Dispute {
        /// The dispute id.
        id: u64,
    },
    /// Governance proposals.
    Proposals(Page),
    /// One proposal.
    Proposal {
        /// The proposal id.
        id: u64,
    },
    /// One agent mandate.
    Mandate {
        /// The mandate id.
        id: u64,
    },
    /// Current protocol parameters.
    Params,
    /// One finalized block.
    Block {
        /// A height, or `latest`.
        at: String,
    },
    /// Finalized blocks (default: the latest page).
    Blocks {
        /// First height.
        #[arg(long)]
        from: Option<u64>,
        /// At most this many.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// A transaction's receipt (or `pending`).
    Tx {
        /// The transaction id.
        #[arg(value_parser = super::hash)]
        id: Hash,
    },
    /// Follow the node's events (blocks and ledger events) until Ctrl-C or --count.
    Events {
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Content-addressed blobs (blake3).
    #[command(subcommand)]
    Blob(Blob),
}

#[derive(Subcommand)]
enum Blob {
    /// Fetch a blob (checked against its hash) into a file, or to stdout.
    Get {
        /// The blob's hash.
        #[arg(value_parser = super::hash)]
        hash: Hash,
        /// Where to write it (default: stdout).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Store a file; prints its hash.
    Put {
        /// The file.
        file: PathBuf,
    },
}

pub fn run(args: QueryArgs) -> anyhow::Result<()> {
    let client = args.node.client();
    let rt = super::runtime()?;
    let json = args.json;
    rt.block_on(async move {
        let path = match &args.what {
            What::Status => "/v1/status".to_string(),
            What::Account { address, key } => {
                let addr = match (address, key) {
                    (Some(a), _) => *a,
                    (None, Some(k)) => KeyFile::read(k)
                        .with_context(|| format!("cannot use key file {}", k.display()))?
                        .address(),
                    (None, None) => bail!("give an ADDRESS or --key FILE"),
                };
                format!("/v1/accounts/{}", hex::encode(&addr.0))
            }
            What::Providers => "/v1/providers".to_string(),
            What::Provider { address } => format!("/v1/providers/{}", hex::encode(&address.0)),
            What::Offers => "/v1/offers".to_string(),
            What::Jobs(p) => format!("/v1/jobs{}", p.query()),
            What::Job { id } => format!("/v1/jobs/{id}"),
            What::Disputes(p) => format!("/v1/disputes{}", p.query()),
            What::Dispute { id } => format!("/v1/disputes/{id}"),
            What::Proposals(p) => format!("/v1/proposals{}", p.query()),
            What::Proposal { id } => format!("/v1/proposals/{id}"),
            What::Mandate { id } => format!("/v1/mandates/{id}"),
            What::Params => "/v1/params".to_string(),
            What::Block { at } => {
                if at == "latest" {
                    "/v1/blocks/latest".to_string()
                } else {
                    let h: u64 = at
                        .parse()
                        .map_err(|_| anyhow::anyhow!("{at:?} is not a height nor `latest`"))?;
                    format!("/v1/blocks/{h}")
                }
            }
            What::Blocks { from, limit } => {
                let mut q = Vec::new();
                if let Some(f) = from {
                    q.push(format!("from={f}"));
                }
                if let Some(l) = limit {
                    q.push(format!("limit={l}"));
                }
                if q.is_empty() {
                    "/v1/blocks".to_string()
                } else {
                    format!("/v1/blocks?{}", q.join("&"))
                }
            }
            What::Tx { id } => format!("/v1/txs/{}", id.to_hex()),
            What::Events { count } => return events(&args.node.url(), *count, json).await,
            What::Blob(Blob::Put { file }) => {
                let bytes = std::fs::read(file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let size = bytes.len();
                let hash = client
                    .put_blob(bytes)
                    .await
                    .with_context(|| format!("storing {} on {}", file.display(), client.base()))?;
                if json {
                    println!("{}", json!({"hash": hash.to_hex(), "size": size}));
                } else {
                    println!("stored {} ({size} bytes)", file.display());
                    println!("hash {}", hash.to_hex());
                }
                return Ok(());
            }
            What::Blob(Blob::Get { hash, out }) => {
                let bytes = client
                    .get_blob(hash)
                    .await
                    .with_context(|| format!("fetching blob {}", hash.to_hex()))?;
                match out {
                    Some(path) => {
                        std::fs::write(path, &bytes)
                            .with_context(|| format!("writing {}", path.display()))?;
                        if json {
                            println!(
                                "{}",
                                json!({"hash": hash.to_hex(), "size": bytes.len(), "file": path.display().to_string()})
                            );
                        } else {
                            println!(
                                "wrote {} bytes to {} (hash checked)",
                                bytes.len(),
                                path.display()
                            );
                        }
                    }
                    None => std::io::stdout()
                        .write_all(&bytes)
                        .context("writing to stdout")?,
                }
                return Ok(());
            }
        };
        let v = client
            .get(&path)
            .await
            .with_context(|| format!("querying {}{path}", client.base()))?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", readable(&args.what, &v));
        }
        Ok(())
    })
}

/// Cells of one column: `path` is a `/`-separated walk into the item.
fn cell(item: &Value, path: &str) -> String {
    let mut v = item;
    for part in path.split('/') {
        v = &v[part];
    }
    match v {
        Value::Array(a) => a.len().to_string(),
        // An enum variant with data reads as its name.
        Value::Object(m) if m.len() == 1 => m.keys().next().cloned().unwrap_or_default(),
        // An empty string (an offer without an endpoint) reads as absent.
        Value::String(s) if s.is_empty() => "-".to_string(),
        other => scalar(other),
    }
}

fn list_table(v: &Value, key: &str, columns: &[(&str, &str)]) -> String {
    let items = v[key].as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        return format!("no {key} (height {})\n", v["height"]);
    }
    let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|it| columns.iter().map(|(_, p)| cell(it, p)).collect())
        .collect();
    table(&headers, &rows)
}

fn readable(what: &What, v: &Value) -> String {
    match what {
        What::Status => {
            let mut s = format!(
                "chain {} at height {}\nstate root {}\nmempool {} txs ({} bytes)\nnode version {}\n",
                v["chain_id"],
                v["height"],
                scalar(&v["state_root"]),
                v["mempool"]["txs"],
                v["mempool"]["bytes"],
                scalar(&v["version"]),
            );
            if v["latest_block"].is_object() {
                s.push_str(&format!(
                    "latest block {} ({} txs, {} ok) at {} ms\n",
                    v["latest_block"]["height"],
                    cell(&v["latest_block"], "txs"),
                    v["latest_block"]["succeeded"],
                    v["latest_block"]["timestamp_ms"],
                ));
            }
            s
        }
        What::Providers => list_table(
            v,
            "providers",
            &[
                ("address", "address"),
                ("price", "offer/price"),
                ("capacity", "offer/capacity"),
                ("region", "offer/region"),
                ("bonded", "bonded"),
                ("reputation_ppm", "reputation_ppm"),
                ("active", "active"),
                ("open", "open"),
                ("retired", "retired"),
            ],
        ),
        What::Offers => list_table(
            v,
            "offers",
            &[
                ("provider", "provider"),
                ("price", "offer/price"),
                ("capacity", "offer/capacity"),
                ("region", "offer/region"),
                ("capabilities", "offer/capabilities"),
                ("speed", "offer/speed"),
                ("endpoint", "offer/endpoint"),
                ("bonded", "bonded"),
                ("reputation_ppm", "reputation_ppm"),
                ("open_jobs", "open_jobs"),
            ],
        ),
        What::Jobs(_) => list_table(
            v,
            "jobs",
            &[
                ("id", "id"),
                ("status", "status"),
                ("stages", "stages"),
                ("escrow", "escrow"),
                ("submitted_at", "submitted_at"),
                ("payer", "payer"),
            ],
        ),
        What::Disputes(_) => list_table(
            v,
            "disputes",
            &[
                ("id", "id"),
                ("job", "job"),
                ("stage", "stage"),
                ("kind", "kind"),
                ("deadline", "deadline"),
                ("defendant", "defendant"),
                ("challenger", "challenger"),
            ],
        ),
        What::Proposals(_) => list_table(
            v,
            "proposals",
            &[
                ("id", "id"),
                ("param", "change/key"),
                ("value", "change/value"),
                ("yes", "yes"),
                ("no", "no"),
                ("voting_ends", "voting_ends"),
                ("status", "status"),
            ],
        ),
        What::Blocks { .. } => list_table(
            v,
            "blocks",
            &[
                ("height", "height"),
                ("txs", "txs"),
                ("ok", "succeeded"),
                ("timestamp_ms", "timestamp_ms"),
                ("state_root", "state_root"),
            ],
        ),
        What::Tx { .. } if v["status"] == "finalized" => {
            let mut s = format!(
                "transaction {}\nfinalized at height {} (index {}): {}\n",
                scalar(&v["id"]),
                v["height"],
                v["index"],
                if v["result"]["ok"] == true {
                    "ok".to_string()
                } else {
                    format!("REJECTED: {}", scalar(&v["result"]["error"]))
                }
            );
            for e in v["events"].as_array().into_iter().flatten() {
                s.push_str(&format!("  {}\n", event_line(&e["event"])));
            }
            s
        }
        _ => render(v),
    }
}

/// Follows `GET /v1/events` (server-sent events) and prints each event.
async fn events(base: &str, count: Option<u64>, json: bool) -> anyhow::Result<()> {
    let base = agentic_node::client::Client::new(base).base().to_string();
    let url = format!("{base}/v1/events");
    // No overall timeout: the stream lasts as long as the user wants.
    let mut resp = reqwest::Client::new()
        .get(&url)
        .send()
        .await
        .with_context(|| format!("cannot reach the node at {url}"))?;
    if !resp.status().is_success() {
        bail!("the node answered {} for {url}", resp.status());
    }
    let mut seen = 0u64;
    if count == Some(0) {
        return Ok(());
    }
    let mut buf = String::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .with_context(|| format!("reading the event stream {url}"))?
    {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        // Events end with a blank line; normalize CRLF first.
        if buf.contains('\r') {
            buf = buf.replace("\r\n", "\n");
        }
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut kind = "message".to_string();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(k) = line.strip_prefix("event:") {
                    kind = k.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim_start());
                }
            }
            if data.is_empty() {
                continue; // keep-alive comment
            }
            let value: Value = serde_json::from_str(&data).unwrap_or(Value::String(data));
            if json {
                println!("{}", json!({"event": kind, "data": value}));
            } else {
                println!("{}", event_text(&kind, &value));
            }
            std::io::stdout().flush().ok();
            seen += 1;
            if count.is_some_and(|c| seen >= c) {
                return Ok(());
            }
        }
    }
    bail!("the node closed the event stream")
}

fn event_text(kind: &str, v: &Value) -> String {
    match kind {
        "block" => format!(
            "block {}: {} txs, {} ok, root {}",
            v["height"],
            cell(v, "txs"),
            v["succeeded"],
            scalar(&v["state_root"])
        ),
        "ledger" => {
            let tx = match &v["tx"] {
                Value::Number(n) => format!("tx {n}"),
                _ => "block".to_string(),
            };
            format!("  height {} {tx}: {}", v["height"], event_line(&v["event"]))
        }
        other => format!("{other}: {v}"),
    }
}
