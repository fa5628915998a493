//! `GET /metrics` of a running validator (tokio runtime, real p2p, storage and HTTP, started
//! as `agentic devnet` starts one): a provider registers, a job is submitted, tokens move,
//! a stale transaction is refused; then one scrape must hold commonware's consensus and p2p
//! metrics, ours for the mempool, executor, gossip and API with plausible values, and ledger
//! gauges equal to what the API reports at the same height.
//!
//! Also here, to share this binary's validator stack: a validator restarted on its data
//! directory serves its old blocks and receipts from its history on disk.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use agentic_client::api::{Event, Page};
use agentic_client::Client;
use agentic_node::localnet::{self, NetworkSpec};
use agentic_node::metrics::{dispute_phase_name, job_status_name};
use agentic_protocol::test_utils::{job_spec, offer};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount, ChainId, Hash, Height, SignedTx, Tx, TxBody};
use commonware_runtime::Runner as _;
use futures::StreamExt;

const CHAIN: u64 = 31;
const WAIT: Duration = Duration::from_secs(60);

/// One sample of the exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A Prometheus text exposition, parsed.
struct Scrape {
    text: String,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| parse_sample(l).unwrap_or_else(|| panic!("unparsable sample: {l}")))
            .collect();
        Scrape { text, samples }
    }

    /// Samples named `name` whose labels include `labels`.
    fn find<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The one sample named `name` with `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<&Sample> = self.find(name, labels).collect();
        assert_eq!(
            found.len(),
            1,
            "expected one sample {name}{labels:?}, found {found:?}"
        );
        found[0].value
    }

    fn has_prefix(&self, prefix: &str) -> bool {
        self.samples.iter().any(|s| s.name.starts_with(prefix))
    }
}

/// `name{k="v",...} value`, with quoted label values (`\"`, `\\` and `\n` escaped).
fn parse_sample(line: &str) -> Option<Sample> {
    let end = line.find(['{', ' '])?;
    let name = line[..end].to_string();
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        loop {
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            if c == ',' {
                continue;
            }
            let eq = body[start..].find('=')? + start;
            let key = body[start..eq].to_string();
            while chars.next()?.0 < eq + 1 {}
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    other => value.push(other),
                }
            }
            labels.insert(key, value);
        }
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

#[test]
fn parses_labels_with_braces_commas_and_escapes() {
    let s = parse_sample(r#"a_b{route="/v1/jobs/{id}",x="1,\"2\"\\"} 3.5"#).unwrap();
    assert_eq!(s.name, "a_b");
    assert_eq!(s.labels["route"], "/v1/jobs/{id}");
    assert_eq!(s.labels["x"], r#"1,"2"\"#);
    assert_eq!(s.value, 3.5);
    assert_eq!(parse_sample("up 1").unwrap().value, 1.0);
}

/// What the API says at one height.
struct ApiView {
    height: Height,
    jobs: BTreeMap<&'static str, usize>,
    stages: BTreeMap<&'static str, usize>,
    escrow: u128,
    disputes: BTreeMap<&'static str, usize>,
    providers: usize,
    providers_active: usize,
    /// Balance + bonded + withdrawable of every known account.
    held: u128,
    bonded: u128,
}

async fn api_view(client: &Client, accounts: &[Address]) -> Option<ApiView> {
    let status = client.status().await.unwrap();
    let jobs = client.jobs(Page::default()).await.unwrap();
    let disputes = client.disputes(Page::default()).await.unwrap();
    let providers = client.providers().await.unwrap();
    let mut view = ApiView {
        height: status.height,
        jobs: BTreeMap::new(),
        stages: BTreeMap::new(),
        escrow: 0,
        disputes: BTreeMap::new(),
        providers: providers.providers.len(),
        providers_active: providers
            .providers
            .iter()
            .filter(|p| !p.provider.retired)
            .count(),
        held: 0,
        bonded: 0,
    };
    for j in &jobs.jobs {
        *view.jobs.entry(job_status_name(j.item.status)).or_default() += 1;
        view.escrow += j.item.escrow.0;
        for s in &j.item.stages {
            *view.stages.entry(s.phase.name()).or_default() += 1;
        }
    }
    for d in &disputes.disputes {
        *view
            .disputes
            .entry(dispute_phase_name(d.item.phase))
            .or_default() += 1;
    }
    let mut heights = vec![jobs.height, disputes.height, providers.height];
    for a in accounts {
        let v = client.account(a).await.unwrap();
        heights.push(v.height);
        view.held += v.account.balance.0 + v.account.bonded.0 + v.account.withdrawable.0;
        view.bonded += v.account.bonded.0;
    }
    heights.iter().all(|h| *h == view.height).then_some(view)
}

/// Totals of the events in blocks `1..=height`, from the event feed.
#[derive(Debug, Default)]
struct Totals {
    slashes: u64,
    slashed: u128,
    misses: u64,
    penalties: u128,
}

async fn totals_until(client: &Client, height: Height) -> Totals {
    let mut events = Box::pin(client.events_from(Height(1)).await.unwrap());
    let mut t = Totals::default();
    while let Some(e) = events.next().await {
        match e.unwrap() {
            Event::Ledger(l) => match l.event {
                agentic_protocol::Event::Slashed { amount, .. } => {
                    t.slashes += 1;
                    t.slashed += amount.0;
                }
                agentic_protocol::Event::DeadlineMissed { penalty, .. } => {
                    t.misses += 1;
                    t.penalties += penalty.0;
                }
                _ => {}
            },
            Event::Block(b) if b.height >= height => break,
            Event::Block(_) => {}
            Event::Lagged { missed } => panic!("event feed lagged by {missed}"),
        }
    }
    t
}

async fn scrape(client: &Client) -> Scrape {
    Scrape::parse(client.metrics().await.unwrap())
}

#[test]
fn metrics_cover_commonware_our_actors_and_the_ledger() {
    let dir = std::env::temp_dir().join(format!("agentic-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = localnet::create(
        &dir,
        NetworkSpec {
            chain_id: CHAIN,
            addresses: localnet::loopback(1).unwrap(),
            users: vec![("alice".into(), None), ("bob".into(), None)],
            funded: Vec::new(),
            params: BTreeMap::new(),
        },
    )
    .unwrap();
    let genesis_supply: u128 = files
        .genesis
        .accounts
        .iter()
        .map(|a| a.balance.parse::<u128>().unwrap() + a.bonded.parse::<u128>().unwrap())
        .sum();
    let accounts: Vec<Address> = files
        .validators
        .iter()
        .chain(files.accounts.iter())
        .map(|(_, k)| k.address())
        .collect();
    let alice = files.account("alice").unwrap().key.clone();
    let bob = files.account("bob").unwrap().key.clone();
    let cfg = commonware_runtime::tokio::Config::new().with_storage_directory(dir.join("storage"));
    let run_dir = dir.clone();
    commonware_runtime::tokio::Runner::new(cfg).start(|context| async move {
        let running = localnet::start(
            context,
            &run_dir,
            &files.genesis,
            &files.validators,
            Duration::from_millis(50),
            WAIT,
        )
        .await
        .unwrap();
        let client = Client::new(format!("http://{}", running[0].api));
        // The status names the validator set the node runs with, and the supply.
        let status = client.status().await.unwrap();
        let keys: Vec<String> = files
            .validators
            .iter()
            .map(|(_, k)| agentic_protocol::hex::encode(k.public_key().as_ref()))
            .collect();
        assert_eq!(status.validators, keys);
        assert_eq!(status.supply.genesis.0, genesis_supply);

        // Act: a provider, a job it may take, a transfer, and a refused stale transaction.
        let params = client.params().await.unwrap();
        client
            .send(
                &bob,
                TxBody::RegisterProvider {
                    offer: offer(1, 4),
                    stake: params.min_provider_stake,
                },
                WAIT,
            )
            .await
            .unwrap();
        let spec = job_spec(
            Hash([1; 32]),
            Hash([2; 32]),
            &[(1, 10_000_000)],
            10,
            VerificationLevel::Optimistic,
        );
        client
            .send(&alice, TxBody::SubmitJob { spec }, WAIT)
            .await
            .unwrap();
        let pay = TxBody::Transfer {
            to: files.account("bob").unwrap().address(),
            amount: Amount(5),
        };
        client.send(&alice, pay.clone(), WAIT).await.unwrap();
        let stale = SignedTx::sign(
            &alice,
            Tx {
                chain_id: ChainId(CHAIN),
                nonce: 0,
                fee: params.required_fee(&pay),
                body: pay,
            },
        );
        let refused = client.submit(&stale).await.unwrap_err().to_string();
        assert!(refused.contains("stale"), "{refused}");

        // Bob took the job but runs no daemon: let his commit deadline pass (or give up
        // after a while; the comparisons below hold either way).
        for _ in 0..100 {
            let m = scrape(&client).await;
            if m.get("validator_ledger_deadline_misses", &[]) >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // One consistent snapshot: the ledger gauges of two scrapes and every API answer
        // in between at the same height.
        let mut tries = 0;
        let (metrics, view) = loop {
            tries += 1;
            assert!(tries < 50, "no consistent snapshot in {tries} tries");
            let before = scrape(&client).await;
            let Some(view) = api_view(&client, &accounts).await else {
                continue;
            };
            let after = scrape(&client).await;
            let h = |s: &Scrape| s.get("validator_ledger_height", &[]) as u64;
            if h(&before) == view.height.0 && h(&after) == view.height.0 {
                break (after, view);
            }
        };
        let m = &metrics;
        let height = view.height.0 as f64;

        // One exposition: a single `# EOF`, last; each family described once.
        assert!(m.text.ends_with("# EOF\n"), "{}", m.text);
        assert_eq!(m.text.matches("# EOF").count(), 1);
        let mut typed = BTreeSet::new();
        for line in m.text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(typed.insert(line), "described twice: {line}");
        }

        // commonware's own: consensus, marshal, p2p, runtime.
        for prefix in [
            "validator_engine_consensus_",
            "validator_engine_marshal_",
            "validator_p2p_",
            "runtime_",
        ] {
            assert!(m.has_prefix(prefix), "no {prefix}* metric in\n{}", m.text);
        }
        // Every metric of the validator carries its `validator` label (a local network shares one
        // registry).
        let unlabelled: Vec<&Sample> = m
            .samples
            .iter()
            .filter(|s| s.name.starts_with("validator_"))
            .filter(|s| s.labels.get("validator").map(String::as_str) != Some("0"))
            .collect();
        assert!(unlabelled.is_empty(), "{unlabelled:#?}");

        // The executor.
        let blocks = m.get("validator_engine_executor_blocks_applied_total", &[]);
        assert!(
            blocks >= 1.0 && blocks <= height,
            "{blocks} blocks at {height}"
        );
        assert!(m.get("validator_engine_executor_height", &[]) >= 1.0);
        assert!(m.get("validator_engine_executor_txs_applied_total", &[]) >= 3.0);
        assert_eq!(
            m.get("validator_engine_executor_txs_failed_total", &[]),
            0.0
        );
        assert!(m.get("validator_engine_executor_apply_duration_count", &[]) >= 1.0);
        assert_eq!(
            m.get("validator_engine_executor_blocks_replayed_total", &[]),
            0.0
        );

        // The mempool.
        assert!(m.get("validator_mempool_admitted_total", &[]) >= 3.0);
        assert_eq!(
            m.get(
                "validator_mempool_rejected_total",
                &[("reason", "stale_nonce")]
            ),
            1.0
        );
        assert!(
            m.get(
                "validator_mempool_removed_total",
                &[("reason", "finalized")]
            ) >= 3.0
        );
        assert_eq!(m.get("validator_mempool_txs", &[]), 0.0);
        assert_eq!(m.get("validator_mempool_bytes", &[]), 0.0);
        assert!(m.get("validator_engine_gossip_sent_total", &[]) >= 3.0);

        // The API: three accepted submissions, one refused, and the scrapes themselves.
        let post = |status: &'static str| {
            m.get(
                "validator_api_requests_total",
                &[("route", "/v1/txs"), ("method", "POST"), ("status", status)],
            )
        };
        assert_eq!(post("202"), 3.0);
        assert_eq!(post("422"), 1.0);
        assert!(
            m.get(
                "validator_api_requests_total",
                &[("route", "/metrics"), ("method", "GET"), ("status", "200")]
            ) >= 1.0
        );
        assert!(m.get("validator_api_request_duration_count", &[]) >= 5.0);

        // The ledger, against the API at the same height.
        let ledger = |name: &str, labels: &[(&str, &str)]| {
            m.get(&format!("validator_ledger_{name}"), labels)
        };
        for (status, n) in &view.jobs {
            assert_eq!(
                ledger("jobs", &[("status", status)]),
                *n as f64,
                "{status} jobs"
            );
        }
        let jobs: f64 = m.find("validator_ledger_jobs", &[]).map(|s| s.value).sum();
        assert_eq!(jobs, 1.0);
        let stages: f64 = m
            .find("validator_ledger_stages", &[])
            .map(|s| s.value)
            .sum();
        assert_eq!(stages, view.stages.values().sum::<usize>() as f64);
        for (phase, n) in &view.stages {
            assert_eq!(
                ledger("stages", &[("phase", phase)]),
                *n as f64,
                "{phase} stages"
            );
        }
        let disputes: f64 = m
            .find("validator_ledger_disputes", &[])
            .map(|s| s.value)
            .sum();
        assert_eq!(disputes, view.disputes.values().sum::<usize>() as f64);
        for (phase, n) in &view.disputes {
            assert_eq!(ledger("disputes", &[("phase", phase)]), *n as f64);
        }
        assert_eq!(ledger("providers", &[]), view.providers as f64);
        assert_eq!(ledger("providers", &[]), 1.0);
        assert_eq!(
            ledger("providers_active", &[]),
            view.providers_active as f64
        );
        assert_eq!(ledger("supply", &[]), genesis_supply as f64);
        assert_eq!(ledger("issued", &[]), 0.0);
        assert_eq!(ledger("escrow", &[]), view.escrow as f64);
        assert_eq!(ledger("bonded", &[]), view.bonded as f64);
        let burned = ledger("burned", &[]);
        assert!(burned > 0.0, "fees are burned");
        // Every token is somewhere: accounts, escrow, burned (no unbonding, no challenge
        // bonds in this run).
        assert_eq!(
            (view.held + view.escrow) as f64 + burned,
            ledger("supply", &[])
        );
        let totals = totals_until(&client, view.height).await;
        assert_eq!(ledger("slashes", &[]), totals.slashes as f64, "{totals:?}");
        assert_eq!(ledger("slashed", &[]), totals.slashed as f64, "{totals:?}");
        assert_eq!(
            ledger("deadline_misses", &[]),
            totals.misses as f64,
            "{totals:?}"
        );
        assert_eq!(
            ledger("deadline_penalties", &[]),
            totals.penalties as f64,
            "{totals:?}"
        );
        // The summary gauges kept from before.
        let summary = m.get("agentic_finalized_height", &[("chain_id", "31")]);
        assert!(summary >= height, "{summary} < {height}");
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A validator stopped and started again on its data directory serves the blocks and the
/// receipt it had (from its history on disk, next to its consensus storage), consensus
/// replays its stored blocks over them, and the chain carries on.
#[test]
fn history_survives_a_validator_restart() {
    let dir = std::env::temp_dir().join(format!("agentic-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let files = localnet::create(
        &dir,
        NetworkSpec {
            chain_id: CHAIN,
            addresses: localnet::loopback(1).unwrap(),
            users: vec![("alice".into(), None), ("bob".into(), None)],
            funded: Vec::new(),
            params: BTreeMap::new(),
        },
    )
    .unwrap();
    let alice = files.account("alice").unwrap().key.clone();
    let pay = TxBody::Transfer {
        to: files.account("bob").unwrap().address(),
        amount: Amount(5),
    };
    let runner = || {
        commonware_runtime::tokio::Runner::new(
            commonware_runtime::tokio::Config::new().with_storage_directory(dir.join("storage")),
        )
    };
    let (genesis, validators) = (files.genesis.clone(), files.validators.clone());
    let (run_dir, key, body) = (dir.clone(), alice.clone(), pay.clone());
    let (receipt, blocks) = runner().start(|context| async move {
        let running = localnet::start(
            context,
            &run_dir,
            &genesis,
            &validators,
            Duration::from_millis(50),
            WAIT,
        )
        .await
        .unwrap();
        let client = Client::new(format!("http://{}", running[0].api));
        let receipt = client.send(&key, body, WAIT).await.unwrap();
        while client.status().await.unwrap().height.0 < receipt.height.0 + 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let tip = client.status().await.unwrap().height.0;
        let mut blocks = Vec::new();
        for h in 1..=tip {
            blocks.push(client.block(Height(h)).await.unwrap());
        }
        (receipt, blocks)
    });
    assert!(dir.join("history-0").join("history.log").is_file());

    let run_dir = dir.clone();
    runner().start(|context| async move {
        let running = localnet::start(
            context,
            &run_dir,
            &files.genesis,
            &files.validators,
            Duration::from_millis(50),
            WAIT,
        )
        .await
        .unwrap();
        let client = Client::new(format!("http://{}", running[0].api));
        for b in &blocks {
            assert_eq!(&client.block(b.height).await.unwrap(), b);
        }
        match client.tx(&receipt.id).await.unwrap() {
            agentic_client::api::TxStatus::Finalized(r) => assert_eq!(r, receipt),
            other => panic!("not finalized after the restart: {other:?}"),
        }
        // The history serves the old blocks at once; the state catches up by replaying
        // marshal's archive, which may still be under way when the API answers.
        let tip = blocks.last().unwrap().height;
        let deadline = std::time::Instant::now() + WAIT;
        while client.status().await.unwrap().height < tip && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(client.status().await.unwrap().height >= tip);
        let again = client.send(&alice, pay, WAIT).await.unwrap();
        assert!(again.height > tip);
    });
    let _ = std::fs::remove_dir_all(&dir);
}
