//! The web explorer (`/`) in a real headless Chromium against a live local market:
//! three validators running consensus, two provider daemons, and a requester whose
//! first job completes (on the honest provider) and whose second fails (a
//! `wrong-output` cheater, audited by the honest provider, bisected, refereed by the
//! validators and slashed).
//!
//! Every page is checked against validator 0's ledger: a job's bill equals the sum of
//! the job's payment events, the dispute's rounds, refereed layer and slash split equal
//! its events, the cheater's page shows what it was slashed. No console error, uncaught
//! exception or CSP violation is allowed on any page; each page's load time (navigation
//! start to its last figure, loopback) is printed, never asserted; screenshots go to
//! `target/explorer-screenshots/live-*.png`. The node crate's explorer test covers the
//! rest (governance, transfers, the live event feed, phone width) on a ledger played
//! block by block. Without a `chromium` binary the browser part is skipped with a
//! message.

/// The headless Chromium driver the node's explorer test uses too.
#[path = "../../node/tests/support/browser.rs"]
mod browser;
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use agentic_protocol::event::Event;
use agentic_protocol::state::{DisputePhase, JobStatus};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{hex, Height, Resolution};
use agentic_provider::Misbehaviour;
use browser::{grouped, out_dir, Browser};

use common::*;

/// The honest provider's price (it runs the completed job and audits the cheater).
const HONEST_PRICE: u128 = 100;
const CHEAT_PRICE: u128 = 1_000;
const MAX_PRICE: u128 = 10_000;
const TIMEOUT: Duration = Duration::from_secs(120);

/// What validator 0's ledger says about the two jobs, to compare the pages with.
#[derive(Debug, Default)]
struct Facts {
    /// Payments (stage pay and audit fees) per job id.
    paid: BTreeMap<u64, u128>,
    /// Bisection rounds of the dispute.
    rounds: usize,
    /// The refereed layer.
    layer: Option<u32>,
    /// (slashed, to the winner, to the requester, burned).
    slash: Option<(u128, u128, u128, u128)>,
    /// The block that resolved the dispute.
    resolved_at: Option<u64>,
    /// The transaction that submitted the completed job.
    submitted_tx: Option<String>,
}

#[test]
fn explorer_pages_on_a_live_market() {
    with_market(
        "explorer-live",
        3,
        &["alice", "honest", "wrong"],
        REFEREED,
        |net| async move {
            let c = net.client();
            let alice = net.key("alice");
            let honest = net.provider("honest", HONEST_PRICE, |_| {}).await.unwrap();

            // A job that completes: optimistic, on the honest provider.
            let mut p = prepare(&["Explorers read the ledger"], &[], MAX_PRICE, 200);
            p.spec.placement = vec![honest.address()];
            p.spec.requirements.verification = VerificationLevel::Optimistic;
            let done = submit(&c, &alice, &p).await.unwrap();
            let j = wait_finished(&c, done, TIMEOUT).await;
            assert_eq!(j.status, JobStatus::Completed, "{j:#?}");

            // A job that fails: the cheater, audited by the honest provider.
            let cheat = net
                .provider("wrong", CHEAT_PRICE, |cfg| {
                    cfg.misbehave = Some(Misbehaviour::WrongOutput)
                })
                .await
                .unwrap();
            let mut p = prepare(&["A wrong answer, in public"], &[], MAX_PRICE, 200);
            p.spec.placement = vec![cheat.address()];
            p.spec.requirements.verification = VerificationLevel::Audited;
            let failed = submit(&c, &alice, &p).await.unwrap();
            let j = wait_finished(&c, failed, TIMEOUT).await;
            assert_eq!(j.status, JobStatus::Failed, "{j:#?}");
            let mut disputes = disputes_of(&c, failed).await;
            assert_eq!(disputes.len(), 1, "{disputes:?}");
            let (dispute, d) = disputes.remove(0);
            assert_eq!(d.phase, DisputePhase::Resolved);
            assert!(d.game.is_finished(), "refereed, not timed out: {d:?}");

            // The ledger's account of both jobs.
            let mut f = Facts::default();
            let (alice_balance, cheat_hex) = {
                let chain = net.validators[0].chain.read().unwrap();
                for b in chain.blocks(Height(1), chain.height()) {
                    for r in &b.events {
                        match &r.event {
                            Event::StagePaid { job, amount, .. } => {
                                *f.paid.entry(job.0).or_default() += amount.0;
                            }
                            Event::AuditPaid { job, fee, .. } => {
                                *f.paid.entry(job.0).or_default() += fee.0
                            }
                            Event::BisectionNarrowed { dispute: x, .. } if *x == dispute => {
                                f.rounds += 1
                            }
                            Event::Slashed {
                                amount,
                                to_winner,
                                to_requester,
                                burned,
                                ..
                            } => f.slash = Some((amount.0, to_winner.0, to_requester.0, burned.0)),
                            Event::DisputeResolved {
                                dispute: x,
                                resolution: Resolution::Refereed { layer },
                                ..
                            } if *x == dispute => {
                                f.layer = Some(*layer);
                                f.resolved_at = Some(b.height.0);
                            }
                            Event::JobSubmitted { job, .. } if *job == done => {
                                f.submitted_tx =
                                    r.tx.and_then(|t| b.tx_ids.get(t as usize))
                                        .map(|id| id.to_hex());
                            }
                            _ => {}
                        }
                    }
                }
                (
                    chain.state().balance(&alice.address()).0,
                    hex::encode(&cheat.address().0),
                )
            };
            let (slashed, to_winner, to_requester, burned) = f.slash.expect("a slash");
            let layer = f.layer.expect("refereed");
            let resolved_at = f.resolved_at.expect("resolved");
            let submitted_tx = f.submitted_tx.clone().expect("the submission");
            assert!(f.rounds > 0, "{f:?}");
            assert!(f.paid[&done.0] > 0 && f.paid[&failed.0] > 0, "{f:?}");

            let pages: Vec<(String, &str, Vec<String>)> = vec![
                (
                    "/".into(),
                    "overview",
                    vec!["Network overview".into(), "Validators (3)".into()],
                ),
                (
                    "/providers".into(),
                    "providers",
                    vec!["Providers (2)".into(), grouped(CHEAT_PRICE)],
                ),
                (
                    format!("/providers/{cheat_hex}"),
                    "provider",
                    vec![format!("Slashed (events seen)\n{}", grouped(slashed))],
                ),
                (
                    "/jobs".into(),
                    "jobs",
                    vec!["Jobs (2)".into(), "Completed".into(), "Failed".into()],
                ),
                (
                    format!("/jobs/{}", done.0),
                    "job-completed",
                    vec![
                        "Completed".into(),
                        format!("Bill (payments)\n{}", grouped(f.paid[&done.0])),
                        "StagePaid".into(),
                    ],
                ),
                (
                    format!("/jobs/{}", failed.0),
                    "job-failed",
                    vec![
                        "Failed".into(),
                        format!("Bill (payments)\n{}", grouped(f.paid[&failed.0])),
                        format!("#{}", dispute.0),
                    ],
                ),
                (
                    format!("/disputes/{}", dispute.0),
                    "dispute",
                    vec![
                        format!("Rounds\n{} ", f.rounds),
                        format!("Refereed layer\n{layer}"),
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
                    format!("/accounts/{}", hex::encode(&alice.address().0)),
                    "account",
                    vec![
                        format!("Balance\n{}", grouped(alice_balance)),
                        "JobSubmitted".into(),
                    ],
                ),
                (
                    format!("/txs/{submitted_tx}"),
                    "tx",
                    vec!["finalized".into(), "JobSubmitted".into()],
                ),
                (
                    format!("/blocks/{resolved_at}"),
                    "block",
                    vec![format!("Block {resolved_at}"), "DisputeResolved".into()],
                ),
            ];
            let base = net.api.clone();
            let out = out_dir();
            let shots = out.clone();
            let dir =
                std::env::temp_dir().join(format!("agentic-chromium-live-{}", std::process::id()));
            let report = tokio::task::spawn_blocking(move || {
                let mut b = Browser::start(dir)?;
                let mut report = Vec::new();
                for (i, (route, name, expect)) in pages.into_iter().enumerate() {
                    let url = format!("{base}/?live={i}#{route}");
                    let shot = shots.join(format!("live-{name}.png"));
                    let (_, ms) = b.check_page(&url, &route, &expect, &shot);
                    report.push((route, ms));
                }
                Some(report)
            })
            .await
            .unwrap();
            browser::report(
                "explorer page load times on a live market",
                report.as_deref(),
                &out,
            );
        },
    );
}
