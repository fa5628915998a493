//! Act 6: token holders govern a parameter. After the outage, a validator
//! proposes to double the penalty for a missed deadline; bonded stake votes
//! (weight = stake); the tally passes it and the change takes effect exactly at
//! its activation height.

use std::time::Duration;

use agentic_protocol::event::Event;
use agentic_protocol::params::{ParamChange, ParamKey};
use agentic_protocol::{Address, Amount, Height, ProposalId, TxBody};
use anyhow::Context;
use serde::Serialize;

use crate::demo::world::World;

/// One vote.
#[derive(Clone, Debug, Serialize)]
pub struct VoteReport {
    /// Who voted.
    pub voter: String,
    /// Yes or no.
    pub approve: bool,
    /// Its weight (bonded stake).
    pub weight: Amount,
}

/// What the vote did.
#[derive(Clone, Debug, Serialize)]
pub struct GovernanceReport {
    /// The proposal.
    pub proposal: ProposalId,
    /// Who proposed it.
    pub proposer: String,
    /// The parameter.
    pub param: &'static str,
    /// Its value before.
    pub before: u64,
    /// The proposed value.
    pub proposed: u64,
    /// Its value after, as `/v1/params` serves it.
    pub after: u64,
    /// The votes.
    pub votes: Vec<VoteReport>,
    /// Last height of the vote.
    pub voting_ends: Height,
    /// The height it was to take effect at.
    pub activates: Height,
    /// The height it took effect at.
    pub effective_height: Height,
}

pub async fn run(w: &mut World) -> anyhow::Result<GovernanceReport> {
    let title = "Token holders vote a parameter change";
    w.progress.begin(title);
    let key = ParamKey::MissPenaltyPpm;
    let before = w.state(|s| s.params().get(key)) as u64;
    let change = ParamChange {
        key,
        value: u128::from(before) * 2,
    };
    let proposer = "validator-0".to_string();
    w.progress.step(format!(
        "{proposer} proposes {} → {}",
        key.name(),
        change.value
    ));
    let receipt = w.send(&proposer, TxBody::Propose { change }).await?;
    let (proposal, voting_ends): (ProposalId, Height) = receipt
        .events
        .iter()
        .find_map(|r| match r.event {
            Event::ProposalSubmitted {
                proposal,
                voting_ends,
                ..
            } => Some((proposal, voting_ends)),
            _ => None,
        })
        .context("no ProposalSubmitted event")?;
    let mut log = vec![format!(
        "{proposer} proposes to double {} ({before} → {} ppm of stake per missed deadline); voting until height {voting_ends}",
        key.name(),
        change.value
    )];

    w.progress.step("validators vote with their bonded stake");
    let n = w.market.validators.len();
    let ballots: Vec<(String, TxBody)> = (0..n)
        .map(|i| {
            (
                format!("validator-{i}"),
                TxBody::Vote {
                    proposal,
                    approve: i + 1 < n || n == 1,
                },
            )
        })
        .collect();
    w.send_all(ballots).await?;
    let votes: Vec<VoteReport> = w
        .events
        .select(|_, e| match e {
            Event::Voted {
                proposal: p,
                voter,
                approve,
                weight,
            } if *p == proposal => Some((*voter, *approve, *weight)),
            _ => None,
        })
        .into_iter()
        .map(
            |(voter, approve, weight): (Address, bool, Amount)| VoteReport {
                voter: w.name(&voter),
                approve,
                weight,
            },
        )
        .collect();
    for v in &votes {
        log.push(format!(
            "{} votes {} with weight {}",
            v.voter,
            if v.approve { "yes" } else { "no" },
            v.weight
        ));
    }

    w.progress
        .step("waiting for the tally and the activation height");
    let wait = Duration::from_secs(60);
    let activates = w
        .events
        .wait_for(wait, "the tally", |_, e| match e {
            Event::ProposalPassed {
                proposal: p,
                activates,
            } if *p == proposal => Some(*activates),
            _ => None,
        })
        .await?;
    log.push(format!(
        "tally after height {voting_ends}: quorum and threshold met; takes effect at height {activates}"
    ));
    let effective = w
        .events
        .wait_for(wait, "the activation", |h, e| match e {
            Event::ParamChanged { proposal: p, .. } if *p == proposal => Some(h),
            _ => None,
        })
        .await?;
    let read = w
        .client
        .params()
        .await
        .context("reading /v1/params")?
        .get(key);
    let after = u64::try_from(read).context("the parameter does not fit in 64 bits")?;
    log.push(format!(
        "height {effective}: {} is now {after} (read back from /v1/params)",
        key.name()
    ));
    w.check(
        "governance: the parameter changed to the voted value exactly at its activation height",
        u128::from(after) == change.value && effective == activates,
        format!(
            "{} {before} → {after} at height {effective} (activation height {activates})",
            key.name()
        ),
    );
    w.act(title, log);
    Ok(GovernanceReport {
        proposal,
        proposer,
        param: key.name(),
        before,
        proposed: change.value as u64,
        after,
        votes,
        voting_ends,
        activates,
        effective_height: effective,
    })
}
