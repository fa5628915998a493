//! The HTTP API over a real TCP socket: submission and admission errors, receipts,
//! queries, blocks, server-sent events, blobs and the OpenAPI document.
//!
//! Blocks are finalized here by calling `Chain::apply` with the mempool's selection
//! (what consensus does once a block is finalized); the consensus path itself is
//! tested in `tests/consensus.rs`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use agentic_client::blobs::BlobStore;
use agentic_node::api::{self, ApiConfig, ApiState};
use agentic_node::{
    AdmitError, Chain, FinalizedBlock, Mempool, MempoolLimits, SharedChain, SharedMempool, Submit,
};
use agentic_protocol::hex;
use agentic_protocol::test_utils::{address_of, key, GenesisBuilder, TestReferee};
use agentic_protocol::tx::{JobSpec, Requirements, StageSpec};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Amount, ChainId, Hash, Height, SignedTx, Tx, TxBody};
use serde_json::{json, Value};

const CHAIN: u64 = 77;

/// Admits into the local mempool only (no peers in this test).
struct LocalSubmit {
    chain: SharedChain,
    mempool: SharedMempool,
}

impl Submit for LocalSubmit {
    fn submit(&self, tx: SignedTx) -> Result<Hash, AdmitError> {
        let chain = self.chain.read().unwrap();
        self.mempool.lock().unwrap().admit(tx, chain.state())
    }
}

struct Node {
    base: String,
    chain: SharedChain,
    mempool: SharedMempool,
    http: reqwest::Client,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("agentic-api-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

#[path = "api/history.rs"]
mod history;

#[path = "api/explorer.rs"]
mod explorer;

/// The headless Chromium driver (shared with the provider crate's explorer test).
#[path = "support/browser.rs"]
mod browser;

fn genesis() -> agentic_protocol::Genesis {
    GenesisBuilder::new(CHAIN)
        .account(address_of(&key(1)), 1_000_000, 0)
        .account(address_of(&key(2)), 500, 0)
        .build()
}

async fn start(name: &str) -> Node {
    start_chain(name, Chain::new(&genesis()).unwrap()).await
}

/// The API over `chain` (at genesis, or with its history opened from disk).
async fn start_chain(name: &str, chain: Chain) -> Node {
    let chain: SharedChain = Arc::new(RwLock::new(chain));
    let mempool: SharedMempool = Arc::new(Mutex::new(Mempool::new(MempoolLimits::default())));
    let state = ApiState {
        chain: chain.clone(),
        mempool: mempool.clone(),
        submit: Arc::new(LocalSubmit {
            chain: chain.clone(),
            mempool: mempool.clone(),
        }),
        blobs: Arc::new(BlobStore::open(tmpdir(name), 4096).unwrap()),
        config: ApiConfig {
            max_json_body: 8 << 10,
            ..ApiConfig::default()
        },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(api::serve(listener, state, async {
        let _ = rx.await;
    }));
    Node {
        base,
        chain,
        mempool,
        http: reqwest::Client::new(),
        _shutdown: tx,
    }
}

impl Node {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn submit(&self, tx: &SignedTx) -> (u16, Value) {
        self.post_raw(
            "/v1/txs",
            json!({"tx": hex::encode(&tx.to_bytes())}).to_string(),
        )
        .await
    }

    /// Finalizes one block with what the mempool would propose.
    fn finalize(&self) -> Height {
        self.finalize_block().height
    }

    /// [`Node::finalize`], returning the block (to replay it after a restart).
    fn finalize_block(&self) -> FinalizedBlock {
        let mut chain = self.chain.write().unwrap();
        let txs = self
            .mempool
            .lock()
            .unwrap()
            .select(chain.state(), &[], 1000, 1 << 20);
        let h = chain.height().plus(1);
        let block = FinalizedBlock {
            height: h,
            digest: *blake3::hash(&h.0.to_le_bytes()).as_bytes(),
            view: h.0,
            timestamp_ms: 1_700_000_000_000 + h.0,
            beacon: [7; 32],
            txs,
        };
        chain.apply(&block, &TestReferee::default()).unwrap();
        self.mempool
            .lock()
            .unwrap()
            .remove_finalized(&block.txs, chain.state());
        block
    }
}

fn transfer(from: u64, nonce: u64, to: u64, amount: u128) -> SignedTx {
    SignedTx::sign(
        &key(from),
        Tx {
            chain_id: ChainId(CHAIN),
            nonce,
            fee: Amount(1),
            body: TxBody::Transfer {
                to: address_of(&key(to)),
                amount: Amount(amount),
            },
        },
    )
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn submit_finalize_query() {
    let n = start("submit").await;
    let tx = transfer(1, 0, 2, 250);
    let (status, body) = n.submit(&tx).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    assert_eq!(n.get(&format!("/v1/txs/{id}")).await.1["status"], "pending");
    assert_eq!(n.get("/v1/status").await.1["mempool"]["txs"], 1);

    let h = n.finalize();
    assert_eq!(h, Height(1));
    let (status, r) = n.get(&format!("/v1/txs/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(r["status"], "finalized");
    assert_eq!(r["height"], 1);
    assert_eq!(r["result"]["ok"], true, "{r}");
    assert!(!r["events"].as_array().unwrap().is_empty());

    let to = hex::encode(&address_of(&key(2)).0);
    let (_, acct) = n.get(&format!("/v1/accounts/{to}")).await;
    assert_eq!(
        acct["balance"], "750",
        "amounts are decimal strings: {acct}"
    );
    let from = hex::encode(&address_of(&key(1)).0);
    let (_, acct) = n.get(&format!("/v1/accounts/{from}")).await;
    assert_eq!(acct["nonce"], 1);
    assert_eq!(acct["balance"], "999749");

    let (_, st) = n.get("/v1/status").await;
    assert_eq!(st["height"], 1);
    assert_eq!(st["chain_id"], CHAIN);
    assert_eq!(st["mempool"]["txs"], 0, "pruned after finalization");
    // The supply, from the ledger's counters: genesis 1,000,500; the transfer's fee is the
    // only thing that left circulation (burned or to the treasury, never lost).
    let amount = |v: &serde_json::Value| v.as_str().unwrap().parse::<u128>().unwrap();
    let supply = &st["supply"];
    assert_eq!(amount(&supply["genesis"]), 1_000_500);
    assert_eq!(
        amount(&supply["total"]),
        amount(&supply["genesis"]) + amount(&supply["issued"]) - amount(&supply["burned"])
    );
    assert!(amount(&supply["total"]) >= 999_749 + 750);
    assert_eq!(
        st["validators"],
        json!([]),
        "this node serves a chain without consensus"
    );
    let root = st["state_root"].as_str().unwrap().to_string();
    let (_, b) = n.get("/v1/blocks/latest").await;
    assert_eq!(b["state_root"], root.as_str());
    assert_eq!(b["txs"][0], id.as_str());
    assert_eq!(n.get("/v1/blocks/1").await.1, b);
    assert_eq!(n.get("/v1/blocks?from=1&limit=5").await.1["blocks"][0], b);
    assert_eq!(n.get("/v1/blocks/2").await.0, 404);

    let (_, p) = n.get("/v1/params").await;
    assert!(p["params"]["min_fee"].is_string());
    assert_eq!(n.get("/v1/providers").await.1["providers"], json!([]));
    assert_eq!(n.get("/v1/offers").await.1["offers"], json!([]));
    assert_eq!(n.get("/v1/jobs?limit=3").await.1["jobs"], json!([]));
    assert_eq!(n.get("/v1/jobs/5").await.0, 404);
    assert_eq!(n.get("/v1/disputes").await.0, 200);
    assert_eq!(n.get("/v1/proposals").await.0, 200);
    assert_eq!(n.get("/v1/mandates/1").await.0, 404);
    let metrics = reqwest::get(format!("{}/metrics", n.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("agentic_finalized_height{chain_id=\"77\"} 1"));
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_node_keeps_serving() {
    let n = start("bad").await;
    let cases: Vec<(reqwest::Body, u16, &str)> = vec![
        ("{not json".into(), 400, "malformed_json"),
        (
            json!({"transaction": "00"}).to_string().into(),
            400,
            "malformed_json",
        ),
        (json!({"tx": "xyz"}).to_string().into(), 400, "bad_hex"),
        (
            json!({"tx": "00ff"}).to_string().into(),
            400,
            "bad_tx_encoding",
        ),
        (vec![b'x'; 64 << 10].into(), 413, "body_too_large"),
    ];
    for (body, status, code) in cases {
        let (s, v) = n.post_raw("/v1/txs", body).await;
        assert_eq!((s, error_code(&v)), (status, code), "{v}");
    }
    // Bad signature: flip one byte of the signature (the last 64 bytes).
    let good = transfer(1, 0, 2, 5);
    let mut bytes = good.to_bytes();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let (s, v) = n
        .post_raw("/v1/txs", json!({"tx": hex::encode(&bytes)}).to_string())
        .await;
    assert_eq!((s, error_code(&v)), (422, "bad_signature"), "{v}");
    // Wrong chain id.
    let other_chain = SignedTx::sign(
        &key(1),
        Tx {
            chain_id: ChainId(CHAIN + 1),
            nonce: 0,
            fee: Amount(1),
            body: TxBody::Transfer {
                to: address_of(&key(2)),
                amount: Amount(1),
            },
        },
    );
    let (s, v) = n.submit(&other_chain).await;
    assert_eq!((s, error_code(&v)), (422, "wrong_chain"), "{v}");
    // Accepted once, then a duplicate, then stale after finalization.
    assert_eq!(n.submit(&good).await.0, 202);
    let (s, v) = n.submit(&good).await;
    assert_eq!((s, error_code(&v)), (409, "duplicate"), "{v}");
    n.finalize();
    let (s, v) = n.submit(&transfer(1, 0, 2, 6)).await;
    assert_eq!((s, error_code(&v)), (422, "stale_nonce"), "{v}");
    // An account that cannot pay the fee.
    let (s, v) = n.submit(&transfer(9, 0, 2, 1)).await;
    assert_eq!((s, error_code(&v)), (422, "cannot_pay_fee"), "{v}");
    // Fees by work: a `SubmitJob` of one stage with one replica and an auditor asks the
    // ledger to match two slots, so it costs `min_fee + 2 × fee_per_slot` (3 at the
    // defaults); the client's `fee_for` says so, and the bare minimum is refused.
    let spec = JobSpec {
        mandate: None,
        model: Hash([1; 32]),
        input: Hash([2; 32]),
        stages: vec![StageSpec {
            first_layer: 0,
            layers: 1,
            ops: 1_000,
            step_units: 0,
            step_ops: 0,
            key_ops: 0,
        }],
        max_price: Amount(10),
        deadline: 50,
        requirements: Requirements {
            replicas: 1,
            verification: VerificationLevel::Audited,
            ..Requirements::default()
        },
        coord: Default::default(),
        placement: Vec::new(),
        generation: None,
    };
    let body = TxBody::SubmitJob { spec };
    let client = agentic_client::Client::new(n.base.clone());
    assert_eq!(client.fee_for(&body).await.unwrap(), Amount(3));
    assert_eq!(client.params().await.unwrap().fee_per_slot, Amount(1));
    let sign = |fee: u128| {
        SignedTx::sign(
            &key(1),
            Tx {
                chain_id: ChainId(CHAIN),
                nonce: 1,
                fee: Amount(fee),
                body: body.clone(),
            },
        )
    };
    let (s, v) = n.submit(&sign(2)).await;
    assert_eq!((s, error_code(&v)), (422, "fee_too_low"), "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains('3'),
        "the message names the required fee: {v}"
    );
    // Bad path parameters.
    assert_eq!(error_code(&n.get("/v1/accounts/zz").await.1), "bad_address");
    assert_eq!(error_code(&n.get("/v1/txs/00").await.1), "bad_hash");
    assert_eq!(error_code(&n.get("/v1/jobs/-1").await.1), "bad_id");
    assert_eq!(
        error_code(&n.get("/v1/blocks?limit=x").await.1),
        "bad_query"
    );
    assert_eq!(error_code(&n.get("/v1/nope").await.1), "not_found");
    // Still serving, and nothing but the one good transfer changed the state.
    let (s, st) = n.get("/v1/status").await;
    assert_eq!(s, 200);
    assert_eq!(st["height"], 1);
    let from = hex::encode(&address_of(&key(1)).0);
    assert_eq!(n.get(&format!("/v1/accounts/{from}")).await.1["nonce"], 1);
}

#[tokio::test]
async fn blobs_are_content_addressed_and_limited() {
    let n = start("blobs").await;
    let data = b"the weights of a very small model".to_vec();
    let h = hex::encode(blake3::hash(&data).as_bytes());
    let url = format!("{}/v1/blobs/{h}", n.base);
    let put = |body: Vec<u8>, url: String| {
        let http = n.http.clone();
        async move {
            let r = http.put(url).body(body).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, v) = put(data.clone(), url.clone()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["size"], data.len());
    assert_eq!(put(data.clone(), url.clone()).await.0, 200, "idempotent");
    let got = n
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), data.as_slice());
    let head = n.http.head(&url).send().await.unwrap();
    assert_eq!(head.status().as_u16(), 200);
    // Wrong hash: refused, nothing stored under that name.
    let wrong = hex::encode(&[5; 32]);
    let (s, v) = put(data.clone(), format!("{}/v1/blobs/{wrong}", n.base)).await;
    assert_eq!((s, error_code(&v)), (422, "hash_mismatch"), "{v}");
    assert_eq!(n.get(&format!("/v1/blobs/{wrong}")).await.0, 404);
    // Too large (the store allows 4096 bytes here).
    let big = vec![1u8; 5000];
    let hb = hex::encode(blake3::hash(&big).as_bytes());
    let (s, v) = put(big, format!("{}/v1/blobs/{hb}", n.base)).await;
    assert_eq!((s, error_code(&v)), (413, "blob_too_large"), "{v}");
    // Not a hash.
    let (s, v) = put(vec![1], format!("{}/v1/blobs/abc", n.base)).await;
    assert_eq!((s, error_code(&v)), (400, "bad_hash"), "{v}");
}

#[tokio::test]
async fn events_stream_blocks_and_ledger_events() {
    use futures::StreamExt;
    let n = start("events").await;
    let resp = n
        .http
        .get(format!("{}/v1/events", n.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut stream = resp.bytes_stream();
    assert_eq!(n.submit(&transfer(1, 0, 2, 3)).await.0, 202);
    n.finalize();
    let mut seen = String::new();
    while !(seen.contains("event: block") && seen.contains("event: ledger")) {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next())
            .await
            .expect("an event within 20 s")
            .expect("stream open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"height\":1"), "{seen}");
    assert!(seen.contains("Transferred"), "{seen}");
}

#[tokio::test]
async fn openapi_describes_every_route() {
    let n = start("openapi").await;
    let (s, doc) = n.get("/openapi.json").await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for p in [
        "/v1/status",
        "/v1/txs",
        "/v1/txs/{id}",
        "/v1/accounts/{address}",
        "/v1/providers",
        "/v1/providers/{address}",
        "/v1/providers/{address}/work",
        "/v1/offers",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/disputes",
        "/v1/disputes/{id}",
        "/v1/proposals",
        "/v1/proposals/{id}",
        "/v1/mandates/{id}",
        "/v1/params",
        "/v1/blocks",
        "/v1/blocks/latest",
        "/v1/blocks/{height}",
        "/v1/events",
        "/v1/blobs/{hash}",
        "/openapi.json",
        "/metrics",
    ] {
        assert!(paths.contains(&p), "{p} is not described");
    }
    // Every described path is served (a parameterless GET never hits the fallback).
    for p in paths {
        if p.contains('{') || p == "/v1/events" || p == "/v1/txs" {
            continue;
        }
        let r = n.http.get(format!("{}{p}", n.base)).send().await.unwrap();
        let code = r.status().as_u16();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_ne!(
            error_code(&body),
            "not_found",
            "{p} answered {code}: {body}"
        );
    }
}

/// Checks `v` against the OpenAPI `schema` (the subset the document uses: `$ref`,
/// `type`, `required`, `properties`, `items`, `oneOf`, `const`, `enum`); an object whose
/// schema lists `properties` may carry no key the schema does not describe.
fn conforms(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return conforms(doc, &doc["components"]["schemas"][name], v, at);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        return options
            .iter()
            .any(|o| conforms(doc, o, v, at).is_ok())
            .then_some(())
            .ok_or(format!("{at}: {v} matches no oneOf option"));
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            return Err(format!("{at}: {v} is not {c}"));
        }
    }
    if let Some(e) = schema["enum"].as_array() {
        if !e.contains(v) {
            return Err(format!("{at}: {v} not in {e:?}"));
        }
    }
    let ok = match schema["type"].as_str() {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_u64() || v.is_i64(),
        Some("boolean") => v.is_boolean(),
        Some("null") => v.is_null(),
        Some(t) => return Err(format!("{at}: schema type {t} not handled")),
    };
    if !ok {
        return Err(format!("{at}: {v} is not of type {}", schema["type"]));
    }
    if let Some(obj) = v.as_object() {
        for k in schema["required"].as_array().into_iter().flatten() {
            let k = k.as_str().unwrap_or_default();
            if !obj.contains_key(k) {
                return Err(format!("{at}: required `{k}` missing"));
            }
        }
        if let Some(props) = schema["properties"].as_object() {
            for (k, val) in obj {
                let sub = props
                    .get(k)
                    .ok_or(format!("{at}: `{k}` is served but not described"))?;
                conforms(doc, sub, val, &format!("{at}.{k}"))?;
            }
        }
    }
    if let (Some(items), Some(list)) = (schema.get("items"), v.as_array()) {
        for (i, x) in list.iter().enumerate() {
            conforms(doc, items, x, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The typed client (`agentic-client`) reads every route into the shared types, which
/// serialize back to exactly the bytes' JSON the node served (nothing dropped, nothing
/// invented), and each body conforms to what `/openapi.json` documents for it.
#[tokio::test]
async fn typed_client_openapi_and_wire_agree() {
    use futures::StreamExt;
    let n = start("typed").await;
    let c = agentic_client::Client::new(n.base.clone());
    let id = c.submit(&transfer(1, 0, 2, 3)).await.unwrap();
    assert!(matches!(
        c.tx(&id).await.unwrap(),
        agentic_client::api::TxStatus::Pending(_)
    ));
    n.finalize();
    let (_, doc) = n.get("/openapi.json").await;
    let me = address_of(&key(1));
    let typed: Vec<(String, Value)> = vec![
        ("/v1/status".into(), json!(c.status().await.unwrap())),
        (
            format!("/v1/txs/{}", id.to_hex()),
            json!(c.tx(&id).await.unwrap()),
        ),
        (
            format!("/v1/accounts/{}", me.to_hex()),
            json!(c.account(&me).await.unwrap()),
        ),
        ("/v1/providers".into(), json!(c.providers().await.unwrap())),
        ("/v1/offers".into(), json!(c.offers().await.unwrap())),
        (
            "/v1/jobs".into(),
            json!(c.jobs(Default::default()).await.unwrap()),
        ),
        (
            "/v1/disputes".into(),
            json!(c.disputes(Default::default()).await.unwrap()),
        ),
        (
            "/v1/proposals".into(),
            json!(c.proposals(Default::default()).await.unwrap()),
        ),
        ("/v1/params".into(), json!(c.params_view().await.unwrap())),
        (
            "/v1/blocks/latest".into(),
            json!(c.latest_block().await.unwrap()),
        ),
        (
            "/v1/blocks/1".into(),
            json!(c.block(Height(1)).await.unwrap()),
        ),
        (
            "/v1/blocks".into(),
            json!(c.blocks(Default::default()).await.unwrap()),
        ),
    ];
    for (path, v) in typed {
        let (status, wire) = n.get(&path).await;
        assert_eq!(status, 200, "{path}: {wire}");
        assert_eq!(v, wire, "{path}: the typed body differs from the wire");
        let template = path
            .replace(&id.to_hex(), "{id}")
            .replace(&me.to_hex(), "{address}")
            .replace("/v1/blocks/1", "/v1/blocks/{height}");
        let schema = &doc["paths"][&template]["get"]["responses"]["200"]["content"]
            ["application/json"]["schema"];
        assert!(!schema.is_null(), "{template} has no documented 200 body");
        conforms(&doc, schema, &wire, &template).unwrap();
    }
    // The event feed replays block 1 from storage: its ledger events, then the block.
    let mut events = Box::pin(c.events_from(Height(1)).await.unwrap());
    let mut kinds = Vec::new();
    while kinds.last() != Some(&"block") {
        let e = tokio::time::timeout(std::time::Duration::from_secs(20), events.next())
            .await
            .expect("an event within 20 s")
            .expect("stream open")
            .unwrap();
        if let agentic_client::api::Event::Ledger(l) = &e {
            assert_eq!(l.height, Height(1));
        }
        kinds.push(e.kind());
    }
    assert!(kinds.len() > 1 && kinds[..kinds.len() - 1].iter().all(|k| *k == "ledger"));
    // Errors arrive typed, with the API's code.
    let err = c.job(agentic_protocol::JobId(9)).await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}
