//! The web explorer (`/`) in a real headless Chromium, against a node API whose ledger
//! holds a completed job, a failed one and the dispute that failed it.
//!
//! The market is played with the protocol's [`TestChain`] (its signing and trace
//! helpers); every block it produces is finalized on the node's [`Chain`] too, with the
//! same transactions and beacon, so the API serves exactly that ledger.
//!
//! Chromium (Debian's `chromium`, headless) is driven over the DevTools protocol on a
//! pipe (`tests/support/browser.rs`, shared with the provider crate's test of the same
//! pages on a live market: three validators with consensus and provider daemons). Each
//! page is loaded afresh; the test waits for the app to mark it
//! rendered (`body[data-ready]`), checks its text against the ledger (a job's bill equals
//! the ledger's payments, a dispute's rounds, layer and slash equal its events), saves a
//! screenshot under `target/explorer-screenshots/`, fails on any console error, uncaught
//! exception or CSP violation, and prints each page's load time (navigation start to its
//! last figure: reported, never asserted). It also finalizes a block while the overview
//! is open and waits for the page to show it (the live `/v1/events` feed), and renders
//! the job page at phone width. Without a `chromium` binary the browser part is skipped
//! with a message.

use super::*;
use agentic_protocol::event::Event;
use agentic_protocol::state::{DisputePhase, JobStatus, StagePhase};
use agentic_protocol::test_utils::{fast_params, job_spec, offer, salt_for, TestChain, Trace};
use agentic_protocol::types::Region;
use agentic_protocol::{DisputeId, JobId};
use commonware_cryptography::ed25519::PrivateKey;
use std::time::{Duration, Instant};

use crate::browser::{grouped, out_dir, Browser};

const REQUESTER: u64 = 1;
const P1: u64 = 11;
const P2: u64 = 12;
const P3: u64 = 13;

/// A [`TestChain`] whose every block is also finalized on the node behind the API.
struct Market {
    tc: TestChain,
    node: Node,
    /// Timestamp of block 1; blocks are 1.2 s apart.
    t0_ms: u64,
}

impl Market {
    /// Applies the queued transactions as the next block on both ledgers.
    fn produce(&mut self) -> Vec<Event> {
        let height = self.tc.state.height().plus(1);
        let beacon = Hash::digest("agentic test beacon", &[&height.0.to_be_bytes()]).0;
        self.tc.next_beacon = Some(beacon);
        let txs = self.tc.pending.clone();
        let out = self.tc.produce();
        let block = FinalizedBlock {
            height,
            digest: *blake3::hash(&height.0.to_le_bytes()).as_bytes(),
            view: height.0,
            timestamp_ms: self.t0_ms + (height.0 - 1) * 1200,
            beacon,
            txs,
        };
        self.node
            .chain
            .write()
            .unwrap()
            .apply(&block, &TestReferee::default())
            .unwrap();
        assert_eq!(
            self.node.chain.read().unwrap().root(),
            self.tc.state.root(),
            "the node's ledger follows the test chain"
        );
        out.events.into_iter().map(|e| e.event).collect()
    }

    /// One transaction in its own block; panics if it fails.
    fn step(&mut self, who: &PrivateKey, body: TxBody) -> Vec<Event> {
        self.tc.push(who, body);
        let n = self.tc.state.height().plus(1);
        let events = self.produce();
        assert!(
            !events.is_empty(),
            "the transaction at height {n} did nothing"
        );
        events
    }

    fn submit(&mut self, spec: JobSpec) -> JobId {
        let id = self.tc.state.meta().next_job;
        self.step(&key(REQUESTER), TxBody::SubmitJob { spec });
        id
    }

    fn assigned(&self, job: JobId) -> u64 {
        let p = self.tc.state.job(job).unwrap().stages[0].slots[0]
            .assignment
            .as_ref()
            .unwrap()
            .provider;
        [P1, P2, P3]
            .into_iter()
            .find(|s| address_of(&key(*s)) == p)
            .unwrap()
    }

    /// Commit, the drawn auditor's honest commitment if any, reveal.
    fn deliver(&mut self, seed: u64, job: JobId, trace: &Trace) {
        let who = address_of(&key(seed));
        let salt = salt_for(&who, job, 0);
        let result = trace.result();
        self.step(
            &key(seed),
            TxBody::CommitResult {
                job,
                stage: 0,
                commitment: result.commitment(job, 0, &salt, &who),
            },
        );
        let audit = self.tc.state.job(job).unwrap().stages[0].audit.clone();
        if let Some(a) = audit.filter(|a| a.commitment.is_none()) {
            let honest = self.tc.honest_trace(job, 0).unwrap();
            let salt = salt_for(&a.auditor, job, 0);
            let commitment = honest.result().commitment(job, 0, &salt, &a.auditor);
            let k = self.tc.keys.get(&a.auditor).cloned().unwrap();
            self.step(
                &k,
                TxBody::AuditCommit {
                    job,
                    stage: 0,
                    commitment,
                },
            );
        }
        self.step(
            &key(seed),
            TxBody::RevealResult {
                job,
                stage: 0,
                result,
                salt,
            },
        );
    }
}

fn model() -> Hash {
    Hash::digest("model", &[b"mlp"])
}
fn input() -> Hash {
    Hash::digest("input", &[b"x"])
}

/// The market: three providers in three regions, a completed optimistic job (0), an
/// audited job (1) whose provider cheats at layer 2, loses the dispute (0) and fails it,
/// a transfer, and a proposal (0) with three votes.
async fn market(name: &str) -> (Market, JobId, JobId, DisputeId) {
    let mut g = GenesisBuilder::new(CHAIN).params(fast_params());
    g = g.account(address_of(&key(REQUESTER)), 1_000_000, 0);
    for seed in [P1, P2, P3] {
        g = g.account(address_of(&key(seed)), 100_000, 0);
    }
    let genesis = g.build();
    let node = start_chain(name, Chain::new(&genesis).unwrap()).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut m = Market {
        tc: TestChain::new(&genesis),
        node,
        t0_ms: now - 60_000,
    };
    for (i, (seed, price)) in [(P1, 5), (P2, 6), (P3, 7)].into_iter().enumerate() {
        let mut o = offer(price, 4);
        o.region = Region(i as u16 + 1);
        o.coord.x = 1000 * i as i32;
        m.tc.push(
            &key(seed),
            TxBody::RegisterProvider {
                offer: o,
                stake: Amount(20_000 + 5_000 * i as u128),
            },
        );
    }
    m.produce();
    // Job 0: honest, optimistic; paid once its challenge window closes.
    let done = m.submit(job_spec(
        model(),
        input(),
        &[(4, 10_000_000)],
        10,
        VerificationLevel::Optimistic,
    ));
    let p = m.assigned(done);
    m.deliver(p, done, &Trace::honest(&model(), 0, 4, input()));
    for _ in 0..4 {
        m.produce();
    }
    assert_eq!(
        m.tc.state.job(done).unwrap().status,
        JobStatus::Completed,
        "{:?}",
        m.tc.state.job(done)
    );
    // Job 1: audited; the cheapest provider (P1) cheats at layer 2, the auditor (P2)
    // reports, and the bisection finds the corrupted layer.
    let failed = m.submit(job_spec(
        model(),
        input(),
        &[(8, 10_000_000)],
        6,
        VerificationLevel::Audited,
    ));
    assert_eq!(m.assigned(failed), P1);
    let bad = Trace::cheating(&model(), 0, 8, input(), 2);
    let honest = Trace::honest(&model(), 0, 8, input());
    m.deliver(P1, failed, &bad);
    let StagePhase::Auditing { auditor, .. } = m.tc.state.job(failed).unwrap().stages[0].phase
    else {
        panic!("stage should be audited");
    };
    assert_eq!(auditor, address_of(&key(P2)));
    let dispute = m.tc.state.meta().next_dispute;
    let salt = salt_for(&auditor, failed, 0);
    m.step(
        &key(P2),
        TxBody::AuditReport {
            job: failed,
            stage: 0,
            result: honest.result(),
            salt,
        },
    );
    while let Some(d) = m.tc.state.dispute(dispute) {
        if d.phase != DisputePhase::Bisecting {
            break;
        }
        let mid = d.game.midpoint().unwrap();
        for (k, t) in [(key(P1), &bad), (key(P2), &honest)] {
            let (leaf, proof) = t.open(mid).unwrap();
            m.tc.push(
                &k,
                TxBody::Bisect {
                    dispute,
                    leaf,
                    proof,
                },
            );
        }
        m.produce();
    }
    assert_eq!(
        m.tc.state.dispute(dispute).unwrap().phase,
        DisputePhase::Resolved
    );
    assert_eq!(m.tc.state.job(failed).unwrap().status, JobStatus::Failed);
    // A transfer, so the requester's history has more than jobs.
    m.step(
        &key(REQUESTER),
        TxBody::Transfer {
            to: address_of(&key(P3)),
            amount: Amount(12_345),
        },
    );
    // A proposal still in its voting period: the two honest providers for, the slashed
    // one against.
    let change = agentic_protocol::params::ParamChange {
        key: agentic_protocol::params::ParamKey::ChallengeWindow,
        value: 4,
    };
    m.step(&key(P2), TxBody::Propose { change });
    for (seed, approve) in [(P2, true), (P3, true), (P1, false)] {
        m.tc.push(
            &key(seed),
            TxBody::Vote {
                proposal: agentic_protocol::ProposalId(0),
                approve,
            },
        );
    }
    m.produce();
    (m, done, failed, dispute)
}

/// Where screenshots and dumps go: `target/explorer-screenshots/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explorer_pages_in_headless_chromium() {
    let (m, done, failed, dispute) = market("explorer").await;
    let n = &m.node;
    // The explorer's assets: the right types and a strict policy.
    for (path, ty) in [
        ("/", "text/html"),
        ("/explorer/app.js", "text/javascript"),
        ("/explorer/style.css", "text/css"),
    ] {
        let r = n
            .http
            .get(format!("{}{path}", n.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let h = r.headers();
        assert!(
            h["content-type"].to_str().unwrap().starts_with(ty),
            "{path}"
        );
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"));
    }
    // What the ledger says, to compare the pages with.
    let st = &m.tc.state;
    let addr_hex = |seed: u64| hex::encode(&address_of(&key(seed)).0);
    let out = out_dir();
    let mut paid = std::collections::BTreeMap::<u64, u128>::new();
    let mut rounds = 0;
    let mut slash = None;
    let mut layer = None;
    let mut transfer_id = None;
    {
        let c = n.chain.read().unwrap();
        for b in c.blocks(Height(1), c.height()) {
            for r in &b.events {
                match &r.event {
                    Event::StagePaid { job, amount, .. } => {
                        *paid.entry(job.0).or_default() += amount.0;
                    }
                    Event::AuditPaid { job, fee, .. } => *paid.entry(job.0).or_default() += fee.0,
                    Event::BisectionNarrowed { dispute: d, .. } if *d == dispute => rounds += 1,
                    Event::Slashed {
                        amount,
                        to_winner,
                        to_requester,
                        burned,
                        ..
                    } => slash = Some((amount.0, to_winner.0, to_requester.0, burned.0)),
                    Event::DisputeResolved {
                        dispute: d,
                        resolution: agentic_protocol::Resolution::Refereed { layer: l },
                        ..
                    } if *d == dispute => layer = Some(*l),
                    Event::Transferred { .. } => {
                        transfer_id = Some(b.tx_ids[r.tx.unwrap() as usize]);
                    }
                    _ => {}
                }
            }
        }
    }
    let (slashed, to_winner, to_requester, burned) = slash.expect("a slash");
    let transfer_id = transfer_id.expect("a transfer");
    let proposal = st.proposal(agentic_protocol::ProposalId(0)).unwrap();
    assert!(proposal.yes.0 > 0 && proposal.no.0 > 0);
    assert_eq!(rounds, 3);
    assert!(paid[&done.0] > 0 && paid[&failed.0] > 0);
    let base = n.base.clone();
    let dir = std::env::temp_dir().join(format!("agentic-chromium-{}", std::process::id()));
    let pages: Vec<(String, String, Vec<String>)> = vec![
        (
            "/".into(),
            "overview".into(),
            vec![
                "Network overview".into(),
                format!("{}", st.height().0),
                "Recent blocks".into(),
                format!(
                    "Total supply{{}}\n{}",
                    grouped(st.meta().genesis_supply.0 + st.meta().issued.0 - st.meta().burned.0)
                ),
                format!("Burned (all time){{}}\n{}", grouped(st.meta().burned.0)),
                "no validator set to list".into(),
            ],
        ),
        (
            "/providers".into(),
            "providers".into(),
            vec![
                "Providers (3)".into(),
                "Price vs reputation".into(),
                grouped(30_000),
                "51.5 %".into(),
            ],
        ),
        (
            format!("/providers/{}", addr_hex(P1)),
            "provider".into(),
            vec![
                "Provider".into(),
                format!("Slashed (events seen)\n{}", grouped(slashed)),
            ],
        ),
        (
            "/jobs".into(),
            "jobs".into(),
            vec!["Jobs (2)".into(), "Completed".into(), "Failed".into()],
        ),
        (
            format!("/jobs/{}", done.0),
            "job-completed".into(),
            vec![
                "Completed".into(),
                format!("Bill (payments)\n{}", grouped(paid[&done.0])),
                "StagePaid".into(),
            ],
        ),
        (
            format!("/jobs/{}", failed.0),
            "job-failed".into(),
            vec![
                "Failed".into(),
                format!("Bill (payments)\n{}", grouped(paid[&failed.0])),
                "AuditPaid".into(),
                format!("#{}", dispute.0),
            ],
        ),
        (
            "/jobs?status=Failed".into(),
            "jobs-failed".into(),
            vec![format!("#{}\tFailed", failed.0)],
        ),
        (
            format!("/txs/{}", transfer_id.to_hex()),
            "tx".into(),
            vec!["finalized".into(), "Transferred".into(), grouped(12_345)],
        ),
        (
            "/disputes".into(),
            "disputes".into(),
            vec!["Disputes (1)".into(), "Resolved".into()],
        ),
        (
            format!("/disputes/{}", dispute.0),
            "dispute".into(),
            vec![
                format!("Rounds\n{rounds} "),
                format!("Refereed layer\n{}", layer.expect("refereed")),
                format!(
                    "{}\t{}\t{}\t{}",
                    grouped(slashed),
                    grouped(to_winner),
                    grouped(to_requester),
                    grouped(burned)
                ),
            ],
        ),
        (
            "/governance".into(),
            "governance".into(),
            vec![
                "Governance (1 proposals)".into(),
                format!(
                    "{}\t{}\t{}",
                    grouped(proposal.yes.0),
                    grouped(proposal.no.0),
                    grouped(proposal.bonded_snapshot.0)
                ),
                "ChallengeWindow → 4".into(),
                "min_fee".into(),
            ],
        ),
        (
            format!("/accounts/{}", addr_hex(REQUESTER)),
            "account".into(),
            vec![
                format!(
                    "Balance\n{}",
                    grouped(st.balance(&address_of(&key(REQUESTER))).0)
                ),
                "Transferred".into(),
                "JobSubmitted".into(),
            ],
        ),
        (
            "/blocks/16".into(),
            "block".into(),
            vec!["Block 16".into(), "DisputeResolved".into()],
        ),
        (
            // Job 1 and block 1 both exist: the search lists both.
            format!("/search/{}", failed.0),
            "search".into(),
            vec![format!("Job #{}", failed.0), format!("Block {}", failed.0)],
        ),
    ];
    let out2 = out.clone();
    // Finalizes one empty block on the node (while a page is open).
    let chain = n.chain.clone();
    let t0 = m.t0_ms;
    let next_block = move || {
        let mut c = chain.write().unwrap();
        let height = c.height().plus(1);
        let block = FinalizedBlock {
            height,
            digest: *blake3::hash(&height.0.to_le_bytes()).as_bytes(),
            view: height.0,
            timestamp_ms: t0 + (height.0 - 1) * 1200,
            beacon: Hash::digest("agentic test beacon", &[&height.0.to_be_bytes()]).0,
            txs: Vec::new(),
        };
        c.apply(&block, &TestReferee::default()).unwrap();
        height.0
    };
    let report = tokio::task::spawn_blocking(move || {
        let mut b = Browser::start(dir)?;
        let mut report = Vec::new();
        for (i, (route, name, expect)) in pages.into_iter().enumerate() {
            let url = format!("{base}/?load={i}#{route}");
            let shot = out2.join(format!("{name}.png"));
            let (text, ms) = b.check_page(&url, &route, &expect, &shot);
            if route.contains("status=") {
                assert!(!text.contains(&format!("#{}\t", done.0)), "{route}: {text}");
            }
            report.push((route, ms));
        }
        // The error check sees what a page logs: a search for what does not exist
        // makes the browser log the two 404s it fetched.
        let (text, _) = b.open(&format!("{base}/?missing#/search/999"), "/search/999");
        assert!(text.contains("Nothing matches"), "{text}");
        let errors = b.take_errors();
        assert!(
            errors.iter().any(|e| e.contains("404")),
            "404s are reported: {errors:?}"
        );
        // ... and the policy refuses an inline script, which is reported too.
        b.eval(
            "document.head.append(Object.assign(document.createElement('script'), \
             {textContent: 'window.inlineRan = true'})); window.inlineRan === true",
        );
        assert_eq!(b.eval("window.inlineRan === true"), json!(false));
        let errors = b.take_errors();
        assert!(
            errors.iter().any(|e| e.contains("Content Security Policy")),
            "CSP violations are reported: {errors:?}"
        );
        // Live: a block finalized while the overview is open reaches the page through
        // `/v1/events`, and the overview redraws with the new height.
        b.open(&format!("{base}/?live#/"), "/");
        let h = next_block();
        let deadline = Instant::now() + Duration::from_secs(10);
        let probe = format!(
            "document.getElementById('live').textContent.includes('block {h}') \
             && document.body.dataset.ready === '/' \
             && document.getElementById('height').textContent === '{h}'"
        );
        while b.eval(&probe) != json!(true) {
            assert!(
                Instant::now() < deadline,
                "block {h} did not reach the open overview"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(b.take_errors().is_empty());
        // Phone width: the job page still renders, without errors.
        b.viewport(390, 844, true);
        let (_, ms) = b.open(
            &format!("{base}/?phone#/jobs/{}", failed.0),
            &format!("/jobs/{}", failed.0),
        );
        b.screenshot(&out2.join("job-failed-phone.png"));
        assert!(b.take_errors().is_empty());
        report.push(("/jobs (phone)".into(), ms));
        Some(report)
    })
    .await
    .unwrap();
    if !crate::browser::report("explorer page load times", report.as_deref(), &out) {
        return;
    }
    if let Some(secs) = std::env::var_os("EXPLORER_HOLD") {
        // Keep the node up to open it by hand: `EXPLORER_HOLD=300 cargo test ... explorer`.
        println!("explorer at {}/", n.base);
        let secs: u64 = secs.to_str().and_then(|s| s.parse().ok()).unwrap_or(300);
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
}
