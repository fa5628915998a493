//! The MCP server end to end: a real rmcp client over streamable HTTP against
//! `McpServer`, on a local market (one validator with real consensus, two
//! provider daemons with their data planes).
//!
//! The client initializes, lists the tools, quotes and submits a two-stage
//! tiny-gpt job, polls it to completion (asking for a recomputation while a
//! stage is in its challenge window), fetches the output and checks it bit for
//! bit against a local run. Then every kind of bad call — wrong types, missing
//! fields, negative and float amounts, unknown jobs and tools, an unreachable
//! node, a ledger rejection, purchases over a mandate's caps — comes back as a
//! tool error with a reason, and the next valid call still works. Last, a
//! lying provider's result is challenged through the tools: the server
//! recomputes, disputes, plays the bisection game and wins; the job fails and
//! the payer is refunded.

mod common;

use std::time::{Duration, Instant};

use agentic_agent::mcp::transport::{self, BearerToken, TransportError};
use agentic_agent::mcp::{Config, McpServer, TOOL_NAMES};
use agentic_client::keystore::KeyFile;
use agentic_compute::bundle::Bundle;
use agentic_protocol::tx::MandateTerms;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount, Height, JobId};
use agentic_provider::local::{self, LocalMarket, MarketSpec};
use common::{grant_mandate, LyingProvider};
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt as _};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TEXTS: [&str; 2] = ["The Fox and the Crow", "a stage per provider"];

type Client = RunningService<RoleClient, ()>;

async fn connect(server: McpServer) -> (transport::HttpServer, Client) {
    let http = transport::serve_http(server, "127.0.0.1:0", None)
        .await
        .unwrap();
    let client =
        ().serve(StreamableHttpClientTransport::from_uri(http.url()))
            .await
            .expect("MCP initialize");
    (http, client)
}

async fn call(c: &Client, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    c.call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A successful call's structured content.
async fn ok(c: &Client, tool: &str, args: Value) -> Value {
    let r = call(c, tool, args).await;
    assert_ne!(r.is_error, Some(true), "{tool} failed: {}", text(&r));
    r.structured_content.expect("structured content")
}

/// A failed call's message; it must mention every one of `needles`.
async fn tool_error(c: &Client, tool: &str, args: Value, needles: &[&str]) -> String {
    let r = call(c, tool, args).await;
    let msg = text(&r);
    assert_eq!(r.is_error, Some(true), "{tool} should fail: {msg}");
    let kind = r.structured_content.as_ref().map(|v| v["error"].clone());
    for n in needles {
        assert!(
            msg.contains(n),
            "{tool}: error {msg:?} ({kind:?}) lacks {n:?}"
        );
    }
    eprintln!("  {tool} → tool error: {msg}");
    msg
}

fn amount(v: &Value) -> u128 {
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an amount: {v}"))
}

fn job_args(stages: u32, max_price: &str) -> Value {
    json!({"model": "tiny-gpt", "texts": TEXTS, "stages": stages, "max_price": max_price})
}

/// Polls `job_status` until `until(status)`; returns that status.
async fn poll(c: &Client, job: u64, until: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let st = ok(c, "job_status", json!({"job": job})).await;
        if until(&st) {
            return st;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "job {job}: {st}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Initialize, list the tools, read the balance and the offers, quote, submit a
/// two-stage job, follow it (recomputing a stage in its challenge window), and
/// fetch its output: the same bits as a local run. Returns the job and its escrow.
async fn buy_a_verified_job(c: &Client, me: Address) -> (u64, u128) {
    let info = c.peer_info().expect("initialized");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("agentic")
    );
    assert!(info.capabilities.tools.is_some());
    let tools = c.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, TOOL_NAMES);
    for t in &tools {
        assert_eq!(t.input_schema["type"], "object", "{}", t.name);
    }
    let quote_tool = tools.iter().find(|t| t.name == "quote_job").unwrap();
    let required = quote_tool.input_schema["required"].as_array().unwrap();
    assert!(required.contains(&json!("model")) && required.contains(&json!("texts")));
    assert_eq!(
        tools
            .iter()
            .find(|t| t.name == "job_status")
            .unwrap()
            .input_schema["required"],
        json!(["job"])
    );

    let bal = ok(c, "get_balance_and_mandate", json!({})).await;
    assert_eq!(bal["address"], json!(me));
    assert!(amount(&bal["balance"]) > 0);
    assert_eq!(bal["mandate"], Value::Null);
    let offers = ok(c, "list_offers", json!({"max_price": "5000"})).await;
    assert_eq!(offers["shown"], 2, "{offers}");
    assert_eq!(
        amount(&offers["offers"][0]["offer"]["price"]),
        1_000,
        "cheapest first"
    );

    let quote = ok(c, "quote_job", job_args(2, "10000")).await;
    assert_eq!(quote["stages"].as_array().unwrap().len(), 2, "{quote}");
    assert_eq!(quote["allowed"], true, "{quote}");
    let escrow = amount(&quote["escrow"]);
    for s in quote["stages"].as_array().unwrap() {
        assert!(amount(&s["expected_cost"]) <= amount(&s["max_cost"]), "{s}");
    }
    assert!(amount(&quote["expected_cost"]) < escrow);

    let sub = ok(c, "submit_job", job_args(2, "10000")).await;
    let job = sub["job"].as_u64().expect("job id");
    assert_eq!(
        amount(&sub["escrow"]),
        escrow,
        "the quote's escrow is locked"
    );
    assert_eq!(sub["payer"], json!(me));
    let started = Instant::now();
    let in_window = |st: &Value| {
        st["stages"]
            .as_array()
            .unwrap()
            .iter()
            .position(|s| s["phase"] == "challengeable")
    };
    let status = poll(c, job, |st| st["done"] == true || in_window(st).is_some()).await;
    if status["done"] != true {
        // A stage is in its challenge window: recomputing an honest result here
        // agrees, and nothing is posted.
        let s = in_window(&status).unwrap();
        let r = call(c, "challenge_result", json!({"job": job, "stage": s})).await;
        if r.is_error == Some(true) {
            // The window may close between the two calls.
            assert!(text(&r).contains("challenge"), "{}", text(&r));
        } else {
            let v = r.structured_content.unwrap();
            assert_eq!(v["posted"], false, "{v}");
            assert_eq!(v["verdict"], "agrees", "{v}");
            eprintln!("  challenge_result on stage {s}: recomputed here, agrees, nothing posted");
        }
    }
    let status = poll(c, job, |st| st["done"] == true).await;
    assert_eq!(status["status"], "Completed", "{status}");
    eprintln!("job {job} completed in {:?}", started.elapsed());

    let res = ok(c, "get_result", json!({"job": job, "max_values": 8})).await;
    let local = {
        let m = Bundle::of("tiny-gpt").unwrap().load().unwrap();
        m.model.run(m.encode(&TEXTS).unwrap()).unwrap()
    };
    assert_eq!(
        res["output_hash"],
        local.trace.output_hash().to_hex(),
        "the same bits as a local run"
    );
    assert_eq!(res["output"]["kind"], "logits");
    assert_eq!(res["output"]["rows"], local.output.rows());
    assert_eq!(res["output"]["values_shown"], 8);
    assert_eq!(
        res["output"]["summary"]["next_token_ids"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let bill = &res["cost"];
    assert!(
        amount(&bill["paid"]) > 0 && amount(&bill["paid"]) < escrow,
        "{bill}"
    );
    assert_eq!(amount(&bill["refund"]), escrow - amount(&bill["paid"]));
    (job, escrow)
}

/// Every kind of bad call is a tool error with a reason; the server keeps serving.
async fn bad_calls_are_tool_errors(c: &Client, agent: &KeyFile, job: u64) {
    tool_error(
        c,
        "job_status",
        json!({"job": "seven"}),
        &["invalid arguments", "job_status", "u64"],
    )
    .await;
    tool_error(c, "job_status", json!({"job": -1}), &["invalid arguments"]).await;
    tool_error(c, "job_status", json!({}), &["missing field `job`"]).await;
    tool_error(
        c,
        "quote_job",
        json!({"texts": ["hi"]}),
        &["missing field `model`"],
    )
    .await;
    tool_error(
        c,
        "quote_job",
        json!({"model": "tiny-gpt", "texts": "hi"}),
        &["invalid type"],
    )
    .await;
    tool_error(
        c,
        "quote_job",
        json!({"model": "tiny-gpt", "texts": ["hi"], "max_price": -5}),
        &["negative"],
    )
    .await;
    tool_error(
        c,
        "submit_job",
        json!({"model": "tiny-gpt", "texts": ["hi"], "max_price": 2.5}),
        &["never floats"],
    )
    .await;
    tool_error(
        c,
        "submit_job",
        json!({"model": "tiny-gpt", "texts": ["hi"], "max_price": "lots"}),
        &["not an amount"],
    )
    .await;
    tool_error(
        c,
        "submit_job",
        json!({"model": "tiny-gpt", "texts": ["hi"], "max_prise": "5"}),
        &["unknown field `max_prise`"],
    )
    .await;
    tool_error(
        c,
        "submit_job",
        json!({"model": "no-such-model", "texts": ["hi"]}),
        &["no-such-model"],
    )
    .await;
    tool_error(
        c,
        "submit_job",
        json!({"model": "tiny-gpt", "texts": ["hi"], "stages": 0}),
        &["at least one stage"],
    )
    .await;
    tool_error(
        c,
        "job_status",
        json!({"job": 999_999}),
        &["unknown job 999999"],
    )
    .await;
    tool_error(
        c,
        "get_result",
        json!({"job": 999_999}),
        &["unknown job 999999"],
    )
    .await;
    tool_error(
        c,
        "challenge_result",
        json!({"job": job, "stage": 7}),
        &["no stage 7"],
    )
    .await;
    tool_error(
        c,
        "challenge_result",
        json!({"job": job, "stage": 0}),
        &["cannot be challenged", "final"],
    )
    .await;
    // The ledger's own rejection: named providers it does not know.
    let nobody = [format!("{:064x}", 1), format!("{:064x}", 2)];
    tool_error(
        c,
        "submit_job",
        json!({"model": "tiny-gpt", "texts": ["hi"], "providers": nobody, "max_price": "10000"}),
        &["the ledger rejected", "does not qualify"],
    )
    .await;
    // A tool that does not exist is a protocol error (JSON-RPC -32602)…
    let e = c
        .call_tool(CallToolRequestParams::new("buy_everything"))
        .await
        .expect_err("unknown tool");
    assert!(e.to_string().contains("unknown tool"), "{e}");
    // …and the server keeps serving.
    let again = ok(c, "job_status", json!({"job": job})).await;
    assert_eq!(again["status"], "Completed");

    // A server whose node is unreachable says so.
    let (_http, offline) = connect(McpServer::new(Config::new(
        "http://127.0.0.1:9",
        agent.key.clone(),
    )))
    .await;
    tool_error(
        &offline,
        "get_balance_and_mandate",
        json!({}),
        &["cannot reach the node"],
    )
    .await;
    tool_error(
        &offline,
        "list_offers",
        json!({}),
        &["cannot reach the node"],
    )
    .await;
    offline.cancel().await.unwrap();
}

/// Under a mandate: purchases over its caps are refused before anything is
/// signed; one within them is paid by the principal and counted as spent.
async fn a_mandate_caps_what_the_agent_spends(net: &LocalMarket, agent: &KeyFile, escrow: u128) {
    let me = Address::from(&agent.key.public_key());
    let principal = net.key("principal");
    let principal_addr = Address::from(&principal.key.public_key());
    let height = common::height(&net.client()).await;
    let mandate = grant_mandate(
        &net.client(),
        &principal.key,
        MandateTerms {
            agent: me,
            total_cap: Amount(escrow * 3),
            per_job_cap: Amount(escrow / 2),
            max_unit_price: Amount(10_000),
            expiry: Height(height + 100_000),
            min_verification: VerificationLevel::Optimistic,
        },
    )
    .await;
    let mut cfg = Config::new(net.api.clone(), agent.key.clone());
    cfg.mandate = Some(mandate);
    let (_http, m) = connect(McpServer::new(cfg)).await;
    let bm = ok(&m, "get_balance_and_mandate", json!({})).await;
    assert_eq!(bm["mandate"]["principal"], json!(principal_addr));
    assert_eq!(amount(&bm["mandate"]["per_job_cap"]), escrow / 2);
    assert_eq!(bm["mandate"]["agent_is_this_key"], true);
    assert_eq!(amount(&bm["mandate"]["spent"]), 0);
    let q = ok(&m, "quote_job", job_args(2, "10000")).await;
    assert_eq!(q["allowed"], false);
    assert!(
        q["refusal"].as_str().unwrap().contains("per-job cap"),
        "{q}"
    );
    let under = format!("mandate {mandate}");
    tool_error(
        &m,
        "submit_job",
        job_args(2, "10000"),
        &["refused before signing", "per-job cap", &under],
    )
    .await;
    // Within the per-job cap, but above the mandate's max unit price.
    tool_error(
        &m,
        "submit_job",
        json!({"model": "tiny-gpt", "texts": ["hi"], "max_price": "20000"}),
        &[
            "refused before signing",
            "max price 20000",
            "above the mandate's 10000",
        ],
    )
    .await;
    // Within the caps: the principal pays the escrow.
    let within = ok(&m, "submit_job", job_args(1, "4000")).await;
    assert_eq!(within["payer"], json!(principal_addr), "{within}");
    let locked = amount(&within["escrow"]);
    assert!(locked <= escrow / 2);
    let bm = ok(&m, "get_balance_and_mandate", json!({})).await;
    assert_eq!(amount(&bm["mandate"]["spent"]), locked, "{bm}");
    m.cancel().await.unwrap();
}

/// A provider reveals a made-up result; `challenge_result` recomputes the stage,
/// finds it differs, posts a challenge and plays the bisection game; the liar
/// stays silent and loses, the job fails, `get_result` refuses it and the payer
/// gets the escrow back.
async fn a_lie_is_challenged_and_the_job_refunded(net: &LocalMarket, c: &Client) {
    let liar = LyingProvider::register(net, "liar", 500).await;
    let sub = ok(
        c,
        "submit_job",
        json!({"model": "tiny-gpt", "texts": TEXTS, "providers": [liar.address().to_string()], "max_price": "10000"}),
    )
    .await;
    let job = sub["job"].as_u64().unwrap();
    let escrow = amount(&sub["escrow"]);
    liar.lie(&net.client(), JobId(job)).await;
    poll(c, job, |st| st["stages"][0]["phase"] == "challengeable").await;
    let ch = ok(c, "challenge_result", json!({"job": job, "stage": 0})).await;
    assert_eq!(ch["posted"], true, "{ch}");
    assert_eq!(ch["verdict"], "differs");
    assert_eq!(ch["agreed"]["output"], json!(LyingProvider::CLAIM));
    eprintln!("  challenge_result: posted, dispute {}", ch["dispute"]);
    let st = poll(c, job, |st| st["done"] == true).await;
    assert_eq!(st["status"], "Failed", "{st}");
    assert!(st["excluded"]
        .as_array()
        .unwrap()
        .contains(&json!(liar.address())));
    assert_eq!(amount(&st["bill"]["paid"]), 0);
    assert_eq!(amount(&st["bill"]["refund"]), escrow);
    tool_error(
        c,
        "get_result",
        json!({"job": job}),
        &["Failed", "no output", "went back to the payer"],
    )
    .await;
}

/// One progress notification: progress, total, message.
type Noted = (f64, Option<f64>, Option<String>);

/// Records the progress notifications a server sends.
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<Noted>>>);

impl rmcp::ClientHandler for Recorder {
    async fn on_progress(
        &self,
        p: rmcp::model::ProgressNotificationParam,
        _: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.0
            .lock()
            .unwrap()
            .push((p.progress, p.total, p.message));
    }
}

/// An MCP server acting with `key` over HTTP, and a client that records its progress
/// notifications.
async fn recording_client(
    net: &LocalMarket,
    key: &PrivateKey,
) -> (
    transport::HttpServer,
    Recorder,
    RunningService<RoleClient, Recorder>,
) {
    let server = McpServer::new(Config::new(net.api.clone(), key.clone()));
    let http = transport::serve_http(server, "127.0.0.1:0", None)
        .await
        .unwrap();
    let rec = Recorder::default();
    let c = rec
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(http.url()))
        .await
        .expect("MCP initialize");
    (http, rec, c)
}

/// `generate`: smollm2-135m over two providers; the tokens arrive as progress
/// notifications (one per token, in order, their texts adding up to the answer's),
/// then the text, the count, the job and its settled bill.
async fn generate_streams_progress_and_bills_the_tokens(net: &LocalMarket, key: &PrivateKey) {
    let (_http, rec, c) = recording_client(net, key).await;
    let mut meta = rmcp::model::RequestMetaObject::default();
    meta.set_progress_token(rmcp::model::ProgressToken(
        rmcp::model::NumberOrString::Number(7),
    ));
    let Value::Object(args) = json!({
        "prompt": "Say hello.", "max_tokens": 8, "greedy": true, "stages": 2,
        "max_price": "2000", "timeout_secs": 120
    }) else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new("generate").with_arguments(args);
    params.meta = Some(meta);
    let r = c.call_tool(params).await.expect("generate");
    assert_ne!(r.is_error, Some(true), "generate failed: {}", text(&r));
    let out = r.structured_content.expect("structured content");
    let n = out["tokens"].as_u64().unwrap() as usize;
    assert!((1..=8).contains(&n), "{out}");
    assert_eq!(out["transcript_on_chain"], true, "{out}");
    assert_eq!(out["settled"], true, "{out}");
    assert_eq!(out["status"], "Completed", "{out}");
    assert!(amount(&out["cost"]["paid"]) > 0, "{out}");
    assert_eq!(
        amount(&out["cost"]["paid"]) + amount(&out["cost"]["refund"]),
        amount(&out["escrow"]),
        "{out}"
    );
    // Notifications may trail the answer by a moment.
    let t = Instant::now();
    while rec.0.lock().unwrap().len() < n && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = rec.0.lock().unwrap().clone();
    assert_eq!(got.len(), n, "one progress notification per token: {got:?}");
    for (i, (done, total, _)) in got.iter().enumerate() {
        assert_eq!(*done, (i + 1) as f64);
        assert_eq!(*total, Some(8.0));
    }
    let streamed: String = got.iter().filter_map(|g| g.2.clone()).collect();
    assert_eq!(
        Value::String(streamed),
        out["text"],
        "the progress texts are the answer"
    );
    // Bad input is a tool error, nothing spent.
    let Value::Object(bad) = json!({"prompt": "x", "max_tokens": 0}) else {
        unreachable!()
    };
    let r = c
        .call_tool(CallToolRequestParams::new("generate").with_arguments(bad))
        .await
        .unwrap();
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).contains("max_tokens"), "{}", text(&r));
    eprintln!("  generate: {n} tokens, {:?}", out["text"]);
    c.cancel().await.unwrap();
}

/// A caller that cancels `generate` mid-stream (rmcp sends `notifications/cancelled`
/// when the call's future is dropped) stops the generation: the job settles with fewer
/// tokens than the greedy answer has, billed for those, the rest of the escrow back.
async fn a_cancelled_generate_stops_its_generation(net: &LocalMarket, key: &PrivateKey) {
    const ASK: &str = "Write a long story about a dragon and a knight.";
    const MAX: u32 = 160;
    let long = {
        let (m, _, _) = agentic_agent::requester::generate::load_llm("smollm2-135m").unwrap();
        let prompt = m.encode_prompt(ASK, true).unwrap();
        let params = agentic_compute::llm::generate::GenerateParams {
            max_tokens: MAX as usize,
            sampler: agentic_compute::llm::Sampler::Greedy,
        };
        m.generate(&prompt, &params, |_| {}).unwrap().tokens.len() as u32
    };
    assert!(
        long >= 100,
        "the ask generates {long} tokens: too few to stop early"
    );
    let (_http, rec, c) = recording_client(net, key).await;
    let client = net.client();
    let before = common::newest_job(&client).await;
    let mut meta = rmcp::model::RequestMetaObject::default();
    meta.set_progress_token(rmcp::model::ProgressToken(
        rmcp::model::NumberOrString::Number(8),
    ));
    let Value::Object(args) = json!({
        "prompt": ASK, "max_tokens": MAX, "greedy": true, "stages": 2,
        "max_price": "2000", "timeout_secs": 120
    }) else {
        unreachable!()
    };
    let mut params = CallToolRequestParams::new("generate").with_arguments(args);
    params.meta = Some(meta);
    {
        let call = c.call_tool(params);
        tokio::pin!(call);
        let until = Instant::now() + Duration::from_secs(120);
        while rec.0.lock().unwrap().len() < 2 {
            assert!(Instant::now() < until, "no tokens came");
            tokio::select! {
                r = &mut call => panic!("generate ended before the cancel: {r:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    } // dropped: the client sends notifications/cancelled
    let id = common::newest_job(&client).await;
    assert!(id > before, "the cancelled call's job");
    let (job, steps) = common::settled_generation(&client, JobId(id)).await;
    assert_eq!(job.status, agentic_protocol::state::JobStatus::Completed);
    assert!(
        0 < steps && steps < long,
        "job {id}: the generation stopped when the call was cancelled: {steps} of {long}"
    );
    eprintln!("  cancelled generate: job {id} stopped after {steps} of {long} tokens");
    c.cancel().await.unwrap();
}

#[test]
fn an_llm_client_buys_verified_compute_and_every_bad_call_is_a_tool_error() {
    let dir = std::env::temp_dir().join(format!("agentic-agent-mcp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let spec = MarketSpec::new(1, &["agent", "principal", "p1", "p2", "liar"])
        .param("reveal_window", 500)
        .param("challenge_window", 25)
        .param("match_timeout", 20)
        .param("audit_window", 20);
    local::run(&dir, spec, |net| async move {
        let t0 = Instant::now();
        let _p1 = net.provider("p1", 1_000, |_| {}).await.unwrap();
        let _p2 = net.provider("p2", 2_000, |_| {}).await.unwrap();
        let agent = net.key("agent");
        let me = Address::from(&agent.key.public_key());
        let (_http, c) = connect(McpServer::new(Config::new(
            net.api.clone(),
            agent.key.clone(),
        )))
        .await;

        let (job, escrow) = buy_a_verified_job(&c, me).await;
        bad_calls_are_tool_errors(&c, &agent, job).await;
        generate_streams_progress_and_bills_the_tokens(&net, &agent.key).await;
        a_cancelled_generate_stops_its_generation(&net, &agent.key).await;
        a_mandate_caps_what_the_agent_spends(&net, &agent, escrow).await;
        a_lie_is_challenged_and_the_job_refunded(&net, &c).await;
        c.cancel().await.unwrap();
        eprintln!("whole scenario: {:?}", t0.elapsed());
    })
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// One raw HTTP/1.1 `initialize` POST to `/mcp` with `authorization` (if any);
/// the status code and the whole response.
async fn raw_initialize(addr: std::net::SocketAddr, authorization: Option<&str>) -> (u16, String) {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#;
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        addr.port(),
        body.len()
    );
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", addr.port()))
        .await
        .unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let status = |buf: &[u8]| -> Option<u16> {
        let text = String::from_utf8_lossy(buf);
        text.contains("\r\n\r\n")
            .then(|| text.split_whitespace().nth(1).and_then(|c| c.parse().ok()))
            .flatten()
    };
    // Read the head; a 401 is read to its end (the server closes), anything
    // else (an event stream that may stay open) is returned with its head.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if status(&buf).is_some_and(|c| c != 401) {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).to_string();
    (status(&buf).unwrap_or(0), text)
}

/// The streamable HTTP endpoint is never open to anyone: beyond loopback it
/// will not start without a bearer token, and with one every request without
/// it, with another scheme or with a wrong token gets 401 and a JSON reason,
/// while a client sending the right token initializes and calls tools.
#[test]
fn the_http_endpoint_answers_only_its_bearer_token() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t0 = Instant::now();
        let server = McpServer::new(Config::new("http://127.0.0.1:9", PrivateKey::from_seed(7)));
        let e = transport::serve_http(server.clone(), "0.0.0.0:0", None)
            .await
            .expect_err("no token beyond loopback");
        assert!(matches!(e, TransportError::Unguarded { .. }), "{e}");
        assert!(e.to_string().contains("without a bearer token"), "{e}");
        assert!(BearerToken::new("short").is_err());

        let secret = "0b5e7c1f-agentic-test-token-6a2d";
        let token = BearerToken::new(secret).unwrap();
        let http = transport::serve_http(server.clone(), "127.0.0.1:0", Some(token.clone()))
            .await
            .unwrap();
        let bearer = format!("Bearer {secret}");
        for (auth, why) in [
            (None, "no Authorization header"),
            (Some("Basic dXNlcjpwYXNz"), "Bearer scheme"),
            (
                Some("Bearer 0b5e7c1f-agentic-test-token-6a2e"),
                "wrong bearer token",
            ),
            (
                Some("Bearer 0b5e7c1f-agentic-test-token-6a2"),
                "wrong bearer token",
            ),
            (Some("Bearer "), "no token"),
        ] {
            let (status, text) = raw_initialize(http.addr, auth).await;
            assert_eq!(status, 401, "{auth:?}: {text}");
            let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or(""))
                .unwrap_or_else(|e| panic!("a JSON reason, not {text:?}: {e}"));
            assert_eq!(body["error"], "unauthorized");
            assert!(body["reason"].as_str().unwrap().contains(why), "{body}");
            assert!(
                text.to_ascii_lowercase()
                    .contains("www-authenticate: bearer"),
                "{text}"
            );
        }
        // The right token gets through to the MCP service (the scheme is case-insensitive).
        let (status, text) = raw_initialize(http.addr, Some(&bearer)).await;
        assert_eq!(status, 200, "{text}");
        let (status, _) = raw_initialize(http.addr, Some(&format!("bearer {secret}"))).await;
        assert_eq!(status, 200);
        // An MCP client with the wrong token cannot even initialize…
        assert!(()
            .serve(StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(http.url())
                    .auth_header("not-the-token-at-all-0000"),
            ))
            .await
            .is_err());
        // …and with the right one it lists and calls tools.
        let c = ()
            .serve(StreamableHttpClientTransport::from_config(
                StreamableHttpClientTransportConfig::with_uri(http.url()).auth_header(secret),
            ))
            .await
            .expect("initialize with the token");
        let tools = c.list_all_tools().await.unwrap();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, TOOL_NAMES);
        tool_error(&c, "list_offers", json!({}), &["cannot reach the node"]).await;
        c.cancel().await.unwrap();
        http.shutdown().await;

        // Beyond loopback with a token: it starts, and still wants the token.
        let open = transport::serve_http(server, "0.0.0.0:0", Some(token))
            .await
            .unwrap();
        let (status, _) = raw_initialize(open.addr, None).await;
        assert_eq!(status, 401);
        let (status, text) = raw_initialize(open.addr, Some(&bearer)).await;
        assert_eq!(status, 200, "{text}");
        open.shutdown().await;
        eprintln!("auth scenario: {:?}", t0.elapsed());
    });
}
