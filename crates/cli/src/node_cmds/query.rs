//! `agentic query`: read the node's finalized chain (one `GET /v1/...` per command),
//! follow its event stream, and move blobs in and out of its blob store.
//!
//! Each read is one typed call of [`Client`]; its answer is turned into the JSON the
//! API documents here, locally. Lists print as tables, single items as indented
//! `key: value` lines, and `--json` prints that JSON (one JSON object per line for
//! `events`).

use std::io::Write as _;
use std::path::PathBuf;

use agentic_client::api::{self, BlockRange, Event, WithId};
use agentic_client::keystore::KeyFile;
use agentic_client::{Client, ClientError};
use agentic_protocol::{Address, DisputeId, Hash, Height, JobId, MandateId, ProposalId};
use anyhow::{bail, Context};
use clap::Subcommand;
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{json, Value};

use super::{event_line, ledger_event_line, render, scalar, table, NodeArgs};

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
    limit: Option<usize>,
}

impl Page {
    fn page(&self) -> api::Page {
        api::Page {
            after: self.after,
            limit: self.limit,
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
        match &args.what {
            What::Events { count } => return events(&client, *count, json).await,
            What::Blob(b) => return blob(&client, b, json).await,
            _ => {}
        }
        let v = fetch(&client, &args.what).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", readable(&args.what, &v));
        }
        Ok(())
    })
}

/// The typed answer of one route, as the JSON the API documents (what `--json` prints
/// and the readable forms walk).
fn as_json<T: Serialize>(
    client: &Client,
    path: &str,
    answer: Result<T, ClientError>,
) -> anyhow::Result<Value> {
    let typed = answer.with_context(|| format!("querying {}{path}", client.base()))?;
    serde_json::to_value(typed).with_context(|| format!("encoding the answer of {path}"))
}

/// One typed call of the client per [`What`] that reads the chain.
async fn fetch(client: &Client, what: &What) -> anyhow::Result<Value> {
    match what {
        What::Status => as_json(client, "/v1/status", client.status().await),
        What::Account { address, key } => {
            let addr = match (address, key) {
                (Some(a), _) => *a,
                (None, Some(k)) => KeyFile::read(k)
                    .with_context(|| format!("cannot use key file {}", k.display()))?
                    .address(),
                (None, None) => bail!("give an ADDRESS or --key FILE"),
            };
            let path = format!("/v1/accounts/{addr}");
            as_json(client, &path, client.account(&addr).await)
        }
        What::Providers => as_json(client, "/v1/providers", client.providers().await),
        What::Provider { address } => {
            let path = format!("/v1/providers/{address}");
            as_json(client, &path, client.provider(address).await)
        }
        What::Offers => as_json(client, "/v1/offers", client.offers().await),
        What::Jobs(p) => as_json(client, "/v1/jobs", client.jobs(p.page()).await),
        What::Job { id } => {
            let answer = client.job(JobId(*id)).await.map(|item| with_id(*id, item));
            as_json(client, &format!("/v1/jobs/{id}"), answer)
        }
        What::Disputes(p) => as_json(client, "/v1/disputes", client.disputes(p.page()).await),
        What::Dispute { id } => {
            let answer = client
                .dispute(DisputeId(*id))
                .await
                .map(|item| with_id(*id, item));
            as_json(client, &format!("/v1/disputes/{id}"), answer)
        }
        What::Proposals(p) => as_json(client, "/v1/proposals", client.proposals(p.page()).await),
        What::Proposal { id } => {
            let answer = client
                .proposal(ProposalId(*id))
                .await
                .map(|item| with_id(*id, item));
            as_json(client, &format!("/v1/proposals/{id}"), answer)
        }
        What::Mandate { id } => {
            let answer = client
                .mandate(MandateId(*id))
                .await
                .map(|item| with_id(*id, item));
            as_json(client, &format!("/v1/mandates/{id}"), answer)
        }
        What::Params => as_json(client, "/v1/params", client.params_view().await),
        What::Block { at } if at == "latest" => {
            as_json(client, "/v1/blocks/latest", client.latest_block().await)
        }
        What::Block { at } => {
            let h: u64 = at
                .parse()
                .map_err(|_| anyhow::anyhow!("{at:?} is not a height nor `latest`"))?;
            as_json(
                client,
                &format!("/v1/blocks/{h}"),
                client.block(Height(h)).await,
            )
        }
        What::Blocks { from, limit } => {
            let range = BlockRange {
                from: *from,
                limit: *limit,
            };
            as_json(client, "/v1/blocks", client.blocks(range).await)
        }
        What::Tx { id } => as_json(client, &format!("/v1/txs/{id}"), client.tx(id).await),
        What::Events { .. } | What::Blob(_) => bail!("not a read of the chain"),
    }
}

/// An entity fetched by id, shown with its id as the API serves it.
fn with_id<T>(id: u64, item: T) -> WithId<T> {
    WithId { id, item }
}

/// `query blob put|get`.
async fn blob(client: &Client, what: &Blob, json: bool) -> anyhow::Result<()> {
    match what {
        Blob::Put { file } => {
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
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
        }
        Blob::Get { hash, out } => {
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
        }
    }
    Ok(())
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

/// Follows `GET /v1/events` ([`Client::events`]) and prints each event.
async fn events(client: &Client, count: Option<u64>, json: bool) -> anyhow::Result<()> {
    let url = format!("{}/v1/events", client.base());
    let stream = client
        .events()
        .await
        .with_context(|| format!("following {url}"))?;
    if count == Some(0) {
        return Ok(());
    }
    let mut stream = std::pin::pin!(stream);
    let mut seen = 0u64;
    while let Some(event) = stream.next().await {
        let event = event.with_context(|| format!("reading the event stream {url}"))?;
        if json {
            println!(
                "{}",
                json!({"event": event.kind(), "data": event_json(&event)?})
            );
        } else {
            println!("{}", event_text(&event));
        }
        std::io::stdout().flush().ok();
        seen += 1;
        if count.is_some_and(|c| seen >= c) {
            return Ok(());
        }
    }
    bail!("the node closed the event stream")
}

/// An event's data as the API sends it.
fn event_json(event: &Event) -> anyhow::Result<Value> {
    Ok(match event {
        Event::Block(b) => serde_json::to_value(b)?,
        Event::Ledger(e) => serde_json::to_value(e)?,
        Event::Lagged { missed } => json!({ "missed": missed }),
    })
}

fn event_text(event: &Event) -> String {
    match event {
        Event::Block(b) => format!(
            "block {}: {} txs, {} ok, root {}",
            b.height,
            b.txs.len(),
            b.succeeded,
            b.state_root
        ),
        Event::Ledger(e) => {
            let tx = match e.tx {
                Some(n) => format!("tx {n}"),
                None => "block".to_string(),
            };
            format!(
                "  height {} {tx}: {}",
                e.height,
                ledger_event_line(&e.event)
            )
        }
        Event::Lagged { missed } => format!("lagged: {}", json!({ "missed": missed })),
    }
}
