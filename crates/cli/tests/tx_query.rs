//! `agentic keys`, `agentic tx` and `agentic query` through the built binary, against
//! a node API served in this process on a real TCP port.
//!
//! The node here is the API over a `Chain` and a `Mempool` with no consensus: a
//! background task takes the mempool's selection every ~100 ms and finalizes it with
//! `Chain::apply`, which is what consensus does with a finalized block. The CLI cannot
//! tell the difference. Every check reads the ledger back through `agentic query`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use agentic_client::blobs::BlobStore;
use agentic_client::keystore::KeyFile;
use agentic_node::api::{self, ApiConfig, ApiState};
use agentic_node::{
    AdmitError, Chain, FinalizedBlock, Mempool, MempoolLimits, SharedChain, SharedMempool, Submit,
};
use agentic_protocol::hex;
use agentic_protocol::test_utils::{address_of, key, GenesisBuilder, TestReferee};
use agentic_protocol::{Hash, SignedTx};
use serde_json::Value;

const CHAIN: u64 = 77;
const ALICE_FUNDS: u128 = 1_000_000;
const BOB_FUNDS: u128 = 100_000;

/// Admits into the local mempool only (no peers).
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

/// A node API on 127.0.0.1 with alice, bob and dave (keys 1, 2, 3) funded, and their key files.
struct TestNode {
    url: String,
    dir: PathBuf,
    alice: PathBuf,
    bob: PathBuf,
    dave: PathBuf,
    _rt: tokio::runtime::Runtime,
}

/// Finalizes what the mempool would propose, as consensus's executor does (including
/// dropping the block's transactions the ledger rejected).
fn finalize(chain: &SharedChain, mempool: &SharedMempool) {
    let mut chain = chain.write().unwrap();
    let txs = mempool
        .lock()
        .unwrap()
        .select(chain.state(), &[], 1000, 1 << 20);
    if txs.is_empty() {
        return;
    }
    let h = chain.height().plus(1);
    let block = FinalizedBlock {
        height: h,
        digest: [h.0 as u8; 32],
        view: h.0,
        timestamp_ms: 1_700_000_000_000 + h.0,
        beacon: [7; 32],
        txs,
    };
    chain.apply(&block, &TestReferee::default()).unwrap();
    mempool
        .lock()
        .unwrap()
        .remove_finalized(&block.txs, chain.state());
}

fn start(name: &str) -> TestNode {
    let dir = std::env::temp_dir().join(format!("agentic-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let genesis = GenesisBuilder::new(CHAIN)
        .account(address_of(&key(1)), ALICE_FUNDS, 0)
        .account(address_of(&key(2)), BOB_FUNDS, 0)
        .account(address_of(&key(3)), BOB_FUNDS, 0)
        .build();
    let chain: SharedChain = Arc::new(RwLock::new(Chain::new(&genesis).unwrap()));
    let mempool: SharedMempool = Arc::new(Mutex::new(Mempool::new(MempoolLimits::default())));
    let state = ApiState {
        chain: chain.clone(),
        mempool: mempool.clone(),
        submit: Arc::new(LocalSubmit {
            chain: chain.clone(),
            mempool: mempool.clone(),
        }),
        blobs: Arc::new(BlobStore::open(dir.join("blobs"), 1 << 20).unwrap()),
        config: ApiConfig::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    rt.spawn(api::serve(listener, state, std::future::pending()));
    rt.spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            finalize(&chain, &mempool);
        }
    });
    let keyfile = |n: &str, seed: u64| {
        let p = dir.join(format!("{n}.json"));
        KeyFile {
            name: n.to_string(),
            key: key(seed),
            bls_share: None,
        }
        .write_new(&p)
        .unwrap();
        p
    };
    TestNode {
        alice: keyfile("alice", 1),
        bob: keyfile("bob", 2),
        dave: keyfile("dave", 3),
        url,
        dir,
        _rt: rt,
    }
}

fn agentic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentic"))
        .args(args)
        .env_remove("AGENTIC_NODE")
        .output()
        .expect("run agentic")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs `agentic args…`, asserts success, returns stdout.
fn ok(args: &[&str]) -> String {
    let out = agentic(args);
    assert!(
        out.status.success(),
        "agentic {args:?} failed:\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `agentic args…` with `--json`, asserts success, parses stdout.
fn json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let out = ok(&a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// Runs `agentic args…`, asserts failure, returns (stdout, stderr).
fn fails(args: &[&str]) -> (String, String) {
    let out = agentic(args);
    assert!(
        !out.status.success(),
        "agentic {args:?} should fail:\nstdout: {}",
        text(&out.stdout)
    );
    (text(&out.stdout), text(&out.stderr))
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

impl TestNode {
    /// `agentic tx --node URL --key KEY <kind…>`.
    fn tx<'a>(&'a self, key: &'a Path, kind: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["tx", "--node", &self.url, "--key", p(key)];
        a.extend_from_slice(kind);
        a
    }

    /// `agentic query --node URL <what…> --json`.
    fn query(&self, what: &[&str]) -> Value {
        let mut a = vec!["query", "--node", &self.url];
        a.extend_from_slice(what);
        json(&a)
    }

    fn account(&self, who: &Path) -> Value {
        self.query(&["account", p(who)])
    }
}

/// The receipt's first event of `kind` (events are `{"tx": i, "event": {kind: {...}}}`).
fn event<'a>(receipt: &'a Value, kind: &str) -> &'a Value {
    receipt["events"]
        .as_array()
        .and_then(|evs| evs.iter().find(|e| e["event"].get(kind).is_some()))
        .map(|e| &e["event"][kind])
        .unwrap_or_else(|| panic!("no {kind} event in {receipt}"))
}

#[test]
fn keys_new_show_and_never_overwrite() {
    let dir = std::env::temp_dir().join(format!("agentic-cli-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("carol.json");
    let created = json(&["keys", "new", "--out", p(&file), "--name", "carol"]);
    assert_eq!(created["name"], "carol");
    let address = created["address"].as_str().unwrap().to_string();
    assert_eq!(address.len(), 64);
    let loaded = KeyFile::read(&file).unwrap();
    assert_eq!(hex::encode(&loaded.address().0), address);

    let shown = json(&["keys", "show", p(&file)]);
    assert_eq!(shown["address"], address.as_str());
    assert_eq!(shown["public_key"], address.as_str());
    assert_eq!(shown["name"], "carol");
    // The secret is never printed, as JSON or as text.
    let secret: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let secret = secret["ed25519_secret"].as_str().unwrap();
    let readable = ok(&["keys", "show", p(&file)]);
    assert!(readable.contains(&address) && readable.contains("carol"));
    assert!(!readable.contains(secret) && !shown.to_string().contains(secret));

    // A second `new` to the same path is refused and leaves the key alone.
    let (_, err) = fails(&["keys", "new", "--out", p(&file)]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(
        hex::encode(&KeyFile::read(&file).unwrap().address().0),
        address,
        "the existing key is untouched"
    );
    // A file that is not a key file is refused by `show`.
    let junk = dir.join("junk.json");
    std::fs::write(&junk, "{\"version\": 1}").unwrap();
    let (_, err) = fails(&["keys", "show", p(&junk)]);
    assert!(err.contains("key file"), "{err}");
}

#[test]
fn transfer_waits_for_the_receipt_and_moves_balances() {
    let n = start("transfer");
    let carol = n.dir.join("carol.json");
    ok(&["keys", "new", "--out", p(&carol)]);

    // Readable output: what was sent, the id, the receipt with its events.
    let out = ok(&n.tx(
        &n.alice,
        &["transfer", "--to", p(&carol), "--amount", "250"],
    ));
    assert!(out.contains("sent transfer from"), "{out}");
    assert!(out.contains("finalized at height"), "{out}");
    assert!(out.contains(": ok"), "{out}");
    assert!(out.contains("Transferred"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("id "))
        .expect("an id line")
        .to_string();

    let c = n.account(&carol);
    assert_eq!(c["balance"], "250", "{c}");
    let a = n.account(&n.alice);
    assert_eq!(
        a["balance"],
        (ALICE_FUNDS - 250 - 1).to_string(),
        "the default fee is the chain's min_fee (1): {a}"
    );
    assert_eq!(a["nonce"], 1);
    // Readable account view.
    let readable = ok(&["query", "--node", &n.url, "account", p(&carol)]);
    assert!(readable.contains("balance: 250"), "{readable}");

    // The transaction, its block, the chain's status.
    let r = n.query(&["tx", &id]);
    assert_eq!(r["status"], "finalized");
    assert_eq!(r["result"]["ok"], true);
    let latest = n.query(&["block", "latest"]);
    assert_eq!(latest["height"], r["height"]);
    assert_eq!(latest["txs"][0], id.as_str());
    assert_eq!(n.query(&["block", &r["height"].to_string()]), latest);
    let st = n.query(&["status"]);
    assert_eq!(st["chain_id"], CHAIN);
    assert_eq!(st["state_root"], latest["state_root"]);
    let blocks = n.query(&["blocks", "--from", "1", "--limit", "10"]);
    assert!(blocks["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .any(|b| b["txs"][0] == id.as_str()));
    let readable = ok(&["query", "--node", &n.url, "block", "latest"]);
    assert!(readable.contains(&id), "{readable}");

    // A second transfer with --json: the receipt as JSON; nonce fetched again (1).
    let r = json(&n.tx(&n.alice, &["transfer", "--to", p(&carol), "--amount", "5"]));
    assert_eq!(r["result"]["ok"], true, "{r}");
    assert_eq!(event(&r, "Transferred")["amount"], "5");
    assert_eq!(n.account(&carol)["balance"], "255");
    assert_eq!(n.account(&n.alice)["nonce"], 2);
}

#[test]
fn staking_provider_mandate_job_and_governance_encode_as_the_ledger_expects() {
    let n = start("kinds");
    let alice = hex::encode(&address_of(&key(1)).0);
    let bob = hex::encode(&address_of(&key(2)).0);

    ok(&n.tx(&n.alice, &["bond", "--amount", "50000"]));
    assert_eq!(n.account(&n.alice)["bonded"], "50000");

    // A provider with every offer flag set (a negative coordinate included).
    ok(&n.tx(
        &n.alice,
        &[
            "register-provider",
            "--price",
            "7",
            "--capacity",
            "3",
            "--region",
            "2",
            "--capabilities",
            "cpu,gpu",
            "--coord",
            "10,-20,5",
            "--endpoint",
            "127.0.0.1:7401",
            "--speed",
            "2500000000",
            "--stake",
            "20000",
        ],
    ));
    let prov = n.query(&["provider", &alice]);
    assert_eq!(prov["offer"]["price"], "7", "{prov}");
    assert_eq!(prov["offer"]["capacity"], 3);
    assert_eq!(prov["offer"]["region"], 2);
    assert_eq!(prov["offer"]["capabilities"], 3, "cpu | gpu");
    assert_eq!(prov["offer"]["coord"]["x"], 10);
    assert_eq!(prov["offer"]["coord"]["y"], -20);
    assert_eq!(prov["offer"]["coord"]["height"], 5);
    assert_eq!(prov["offer"]["endpoint"], "127.0.0.1:7401");
    assert_eq!(prov["offer"]["speed"], 2_500_000_000u64);
    assert_eq!(prov["bonded"], "70000", "bond + stake");
    assert_eq!(n.query(&["offers"])["offers"].as_array().unwrap().len(), 1);
    let table = ok(&["query", "--node", &n.url, "providers"]);
    assert!(
        table.starts_with("address") && table.contains(&alice),
        "{table}"
    );

    // A mandate for bob, read back term by term.
    let r = json(&n.tx(
        &n.alice,
        &[
            "grant-mandate",
            "--agent",
            &bob,
            "--total-cap",
            "1000",
            "--per-job-cap",
            "100",
            "--max-unit-price",
            "9",
            "--expiry",
            "1000000",
            "--min-verification",
            "sampled",
        ],
    ));
    let mandate = event(&r, "MandateGranted")["mandate"].to_string();
    let m = n.query(&["mandate", &mandate]);
    assert_eq!(m["principal"], alice.as_str(), "{m}");
    assert_eq!(m["terms"]["agent"], bob.as_str());
    assert_eq!(m["terms"]["total_cap"], "1000");
    assert_eq!(m["terms"]["per_job_cap"], "100");
    assert_eq!(m["terms"]["max_unit_price"], "9");
    assert_eq!(m["terms"]["expiry"], 1_000_000);
    assert_eq!(m["terms"]["min_verification"], "Sampled");
    assert_eq!(m["revoked"], false);
    ok(&n.tx(&n.alice, &["revoke-mandate", "--mandate", &mandate]));
    assert_eq!(n.query(&["mandate", &mandate])["revoked"], true);

    // Bob posts a two-stage job with requirements.
    let model = hex::encode(&[0xaa; 32]);
    let input = hex::encode(&[0xbb; 32]);
    let r = json(&n.tx(
        &n.bob,
        &[
            "submit-job",
            "--model",
            &model,
            "--input",
            &input,
            "--stage",
            "0:2:1000000",
            "--stage",
            "2:3:2000000",
            "--max-price",
            "8",
            "--deadline",
            "12",
            "--regions",
            "2,5",
            "--min-stake",
            "10",
        ],
    ));
    let job_id = event(&r, "JobSubmitted")["job"].to_string();
    let job = n.query(&["job", &job_id]);
    let spec = &job["spec"];
    assert_eq!(job["payer"], bob.as_str(), "{job}");
    assert_eq!(spec["model"], model.as_str());
    assert_eq!(spec["input"], input.as_str());
    assert_eq!(spec["stages"][1]["first_layer"], 2);
    assert_eq!(spec["stages"][1]["layers"], 3);
    assert_eq!(spec["stages"][1]["ops"], 2_000_000);
    assert_eq!(spec["max_price"], "8");
    assert_eq!(spec["deadline"], 12);
    assert_eq!(spec["requirements"]["regions"], serde_json::json!([2, 5]));
    assert_eq!(spec["requirements"]["min_stake"], "10");
    assert_eq!(spec["requirements"]["replicas"], 1);
    assert_eq!(spec["mandate"], Value::Null);
    assert_eq!(n.query(&["jobs"])["jobs"].as_array().unwrap().len(), 1);
    // Alice's offer qualifies: she took stage 0 at once (stage 1 waits for another provider).
    assert_eq!(
        job["stages"][0]["slots"][0]["assignment"]["provider"],
        alice.as_str(),
        "{job}"
    );
    assert_eq!(n.query(&["provider", &alice])["active"], 1);

    // The audit and availability kinds reach the ledger, which refuses them from dave
    // (not the stage's auditor; not assigned to the job).
    let (_, err) = fails(&n.tx(
        &n.dave,
        &[
            "audit-commit",
            "--job",
            &job_id,
            "--stage",
            "0",
            "--commitment",
            &hex::encode(&[0xcc; 32]),
        ],
    ));
    assert!(
        err.contains("rejected") && err.contains("not the auditor"),
        "{err}"
    );
    let (_, err) = fails(&n.tx(&n.dave, &["claim-unavailable", "--job", &job_id]));
    assert!(
        err.contains("rejected") && err.contains("only an assigned provider"),
        "{err}"
    );
    // The generation kinds reach the ledger too, which refuses them on this plain job;
    // a commit-session without all the parts of its commitment never leaves the CLI.
    let h = |b: u8| hex::encode(&[b; 32]);
    let (_, err) = fails(&n.tx(
        &n.dave,
        &[
            "commit-session",
            "--job",
            &job_id,
            "--stage",
            "0",
            "--input",
            &h(1),
            "--output",
            &h(2),
            "--trace-root",
            &h(3),
            "--steps",
            "4",
            "--salt",
            &h(5),
        ],
    ));
    assert!(
        err.contains("rejected") && err.contains("CommitSession is for generation stages"),
        "{err}"
    );
    let (_, err) = fails(&n.tx(
        &n.dave,
        &[
            "commit-session",
            "--job",
            &job_id,
            "--stage",
            "0",
            "--input",
            &h(1),
            "--output",
            &h(2),
        ],
    ));
    assert!(
        !err.contains("rejected") && err.contains("--steps"),
        "{err}"
    );
    let (_, err) = fails(&n.tx(
        &n.dave,
        &[
            "replace-stage",
            "--job",
            &job_id,
            "--stage",
            "0",
            "--provider",
            &alice,
        ],
    ));
    assert!(
        err.contains("rejected") && err.contains("is not a generation job"),
        "{err}"
    );
    let (_, err) = fails(&n.tx(
        &n.dave,
        &[
            "step-root",
            "--dispute",
            "99",
            "--root",
            &h(6),
            "--first-proof",
            &h(7),
            "--last-proof",
        ],
    ));
    assert!(
        err.contains("rejected") && err.contains("unknown dispute 99"),
        "{err}"
    );

    // Bob withdraws the job before anyone committed work: only he may, and only once.
    let (_, err) = fails(&n.tx(&n.dave, &["cancel-job", "--job", &job_id]));
    assert!(
        err.contains("rejected") && err.contains("not the job's requester"),
        "{err}"
    );
    let escrow = job["escrow"].as_str().unwrap().to_string();
    assert_eq!(escrow, "24", "(1 + 2) mega-ops × 8");
    let r = json(&n.tx(&n.bob, &["cancel-job", "--job", &job_id]));
    assert_eq!(r["result"]["ok"], true, "{r}");
    assert_eq!(event(&r, "JobCancelled")["refund"], escrow.as_str());
    let job = n.query(&["job", &job_id]);
    assert_eq!(job["status"], "Cancelled", "{job}");
    assert_eq!(job["escrow"], "0");
    let prov = n.query(&["provider", &alice]);
    assert_eq!(prov["active"], 0, "{prov}");
    assert_eq!(prov["open"], 0, "{prov}");
    // All of the escrow came back: bob paid only the two fees — the submission's by its
    // work (min_fee 1 + one per replica slot: 2 stages × 1, no auditor as optimistic)
    // and the cancellation's (1).
    assert_eq!(
        n.account(&n.bob)["balance"],
        (BOB_FUNDS - 3 - 1).to_string()
    );
    let (_, err) = fails(&n.tx(&n.bob, &["cancel-job", "--job", &job_id]));
    assert!(err.contains("is not active"), "{err}");

    // Governance: alice proposes and votes yes with her bonded stake.
    let r = json(&n.tx(
        &n.alice,
        &["propose", "--param", "challenge_window", "--value", "7"],
    ));
    assert_eq!(r["result"]["ok"], true, "{r}");
    let props = n.query(&["proposals"]);
    let prop = &props["proposals"][0];
    assert_eq!(prop["change"]["key"], "ChallengeWindow", "{props}");
    assert_eq!(prop["change"]["value"], "7", "a u128: a decimal string");
    assert_eq!(prop["proposer"], alice.as_str());
    let pid = prop["id"].to_string();
    ok(&n.tx(&n.alice, &["vote", "--proposal", &pid, "--yes"]));
    let prop = n.query(&["proposal", &pid]);
    assert_eq!(prop["yes"], n.account(&n.alice)["bonded"], "{prop}");
    assert_eq!(prop["no"], "0");
    // Voting twice is the ledger's call, and it says no.
    let (_, err) = fails(&n.tx(&n.alice, &["vote", "--proposal", &pid, "--no"]));
    assert!(err.contains("rejected"), "{err}");
}

#[test]
fn refusals_and_rejections_exit_nonzero_with_the_reason() {
    let n = start("errors");
    let bob = hex::encode(&address_of(&key(2)).0);
    let (_, err) = fails(&["query", "--node", &n.url, "block", "latest"]);
    assert!(err.contains("no_blocks_yet"), "{err}");

    // The ledger rejects (the receipt says why): more than bob has.
    let (out, err) = fails(&n.tx(
        &n.bob,
        &["transfer", "--to", p(&n.alice), "--amount", "999999999"],
    ));
    assert!(out.contains("REJECTED"), "{out}");
    assert!(
        err.contains("rejected") && err.contains("insufficient balance"),
        "{err}"
    );
    // A rejected transaction changes nothing, not even the nonce.
    let b = n.account(&n.bob);
    assert_eq!(b["balance"], BOB_FUNDS.to_string(), "{b}");
    assert_eq!(b["nonce"], 0);
    // With --json the receipt is still printed, and the exit is still non-zero.
    // (Another signer: the mempool still holds bob's rejected nonce-0 transaction,
    // see the note on `finalize`.)
    let mut args = n.tx(&n.dave, &["unbond", "--amount", "5"]);
    args.push("--json");
    let (out, err) = fails(&args);
    let receipt: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out} {err}"));
    assert_eq!(receipt["result"]["ok"], false);
    assert!(err.contains("insufficient bonded stake"), "{err}");

    // The API refuses: wrong chain id (code and message shown).
    let (_, err) = fails(&n.tx(
        &n.alice,
        &[
            "--chain-id",
            "999",
            "transfer",
            "--to",
            &bob,
            "--amount",
            "1",
        ],
    ));
    assert!(err.contains("wrong_chain") && err.contains("422"), "{err}");
    // A stale nonce (after alice's first transaction).
    ok(&n.tx(&n.alice, &["transfer", "--to", &bob, "--amount", "1"]));
    let (_, err) = fails(&n.tx(
        &n.alice,
        &["transfer", "--to", &bob, "--amount", "1", "--nonce", "0"],
    ));
    assert!(err.contains("stale_nonce"), "{err}");
    // A bad and a missing key file.
    let junk = n.dir.join("junk.json");
    std::fs::write(&junk, "not json").unwrap();
    let (_, err) = fails(&n.tx(&junk, &["bond", "--amount", "1"]));
    assert!(err.contains("key file"), "{err}");
    let (_, err) = fails(&n.tx(&n.dir.join("missing.json"), &["bond", "--amount", "1"]));
    assert!(err.contains("missing.json"), "{err}");
    let (_, err) = fails(&["tx", "--node", &n.url, "bond", "--amount", "1"]);
    assert!(err.contains("--key"), "{err}");
    // Bad flags are refused before anything is sent.
    let (_, err) = fails(&n.tx(&n.alice, &["transfer", "--to", "xyz", "--amount", "1"]));
    assert!(err.contains("not an address"), "{err}");
    let (_, err) = fails(&n.tx(&n.alice, &["propose", "--param", "nope", "--value", "1"]));
    assert!(err.contains("unknown parameter"), "{err}");
    // An unreachable node.
    let (_, err) = fails(&[
        "tx",
        "--node",
        "http://127.0.0.1:1",
        "--key",
        p(&n.alice),
        "bond",
        "--amount",
        "1",
    ]);
    assert!(err.contains("cannot reach the node"), "{err}");
    // Queries of unknown things show the API's code.
    let (_, err) = fails(&["query", "--node", &n.url, "job", "42"]);
    assert!(err.contains("not_found"), "{err}");
    // Stopping the generation of a job that does not exist.
    let (_, err) = fails(&["job", "--node", &n.url, "stop", "42", "--key", p(&n.alice)]);
    assert!(
        err.contains("stopping job 42") && err.contains("not_found"),
        "{err}"
    );
    // Of all these, only alice's one good transfer reached the ledger.
    assert_eq!(n.account(&n.alice)["nonce"], 1);
    assert_eq!(n.account(&n.bob)["balance"], (BOB_FUNDS + 1).to_string());
}

#[test]
fn blobs_round_trip_and_events_follow_the_chain() {
    let n = start("blobs");
    let file = n.dir.join("weights.bin");
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let put = n.query(&["blob", "put", p(&file)]);
    let hash = put["hash"].as_str().unwrap().to_string();
    assert_eq!(
        hash,
        hex::encode(blake3::hash(&data).as_bytes()),
        "named by its blake3 hash"
    );
    assert_eq!(put["size"], data.len());
    let back = n.dir.join("back.bin");
    ok(&[
        "query",
        "--node",
        &n.url,
        "blob",
        "get",
        &hash,
        "--out",
        p(&back),
    ]);
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let (_, err) = fails(&[
        "query",
        "--node",
        &n.url,
        "blob",
        "get",
        &hex::encode(&[3; 32]),
    ]);
    assert!(err.contains("not_found"), "{err}");

    // `query events --count 2` sees a Transferred event and a block (a block's ledger
    // events come before it; it may subscribe between the two). Transfers are sent
    // until it has seen them (it may subscribe after the first one).
    let child = Command::new(env!("CARGO_BIN_EXE_agentic"))
        .args(["query", "--node", &n.url, "events", "--count", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let child = Arc::new(Mutex::new(child));
    let mut sent = 0;
    while child.lock().unwrap().try_wait().unwrap().is_none() && sent < 100 {
        ok(&n.tx(&n.alice, &["transfer", "--to", p(&n.bob), "--amount", "1"]));
        sent += 1;
    }
    let child = Arc::try_unwrap(child).ok().unwrap().into_inner().unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let events = text(&out.stdout);
    assert!(events.lines().any(|l| l.starts_with("block ")), "{events}");
    assert!(events.contains("Transferred"), "{events}");
    assert_eq!(events.lines().count(), 2, "{events}");
}
