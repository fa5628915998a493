//! Act 7: the books close. Every validator's finalized state is audited: the
//! tokens held everywhere they can be (balances, stake, unbonding, escrow,
//! challenge bonds, burned) add up to the genesis supply plus issuance, on
//! every validator, and the validators agree on the state root. The node API
//! has no supply endpoint, so the audit reads the validators in this process
//! (`State::supply`) and checks the expected figure against the genesis file.

use std::time::{Duration, Instant};

use agentic_protocol::{Amount, Hash, Height};
use serde::Serialize;

use crate::demo::cast;
use crate::demo::world::World;

/// The audit of the books.
#[derive(Clone, Debug, Serialize)]
pub struct SupplyReport {
    /// Whether held == expected on every validator, and expected == genesis.
    pub conserved: bool,
    /// Tokens held everywhere, burned included (validator 0).
    pub held: Amount,
    /// Genesis supply plus issuance (validator 0).
    pub expected: Amount,
    /// The sum of the genesis file's balances.
    pub genesis: Amount,
    /// Burned by fees and penalties.
    pub burned: Amount,
    /// The height compared across validators.
    pub height: Height,
    /// Validator 0's state root there.
    pub state_root: Hash,
    /// Whether every validator has the same root there.
    pub validators_agree: bool,
    /// Events the demo's log missed (0: every check saw every event).
    pub events_missed: u64,
}

/// One party's final account.
#[derive(Clone, Debug, Serialize)]
pub struct AccountReport {
    /// Its name.
    pub name: String,
    /// Its role.
    pub role: &'static str,
    /// Its address.
    pub address: agentic_protocol::Address,
    /// Spendable balance.
    pub balance: Amount,
    /// Bonded stake.
    pub bonded: Amount,
    /// Reputation (ppm), for providers.
    pub reputation_ppm: Option<u32>,
}

pub async fn run(w: &mut World) -> anyhow::Result<(SupplyReport, Vec<AccountReport>)> {
    let title = "The books close";
    w.progress.begin(title);
    w.progress
        .step("every validator catches up; supply and roots are audited");
    // A height every validator has finalized.
    let target = w.height();
    let start = Instant::now();
    let n = w.market.validators.len();
    while (0..n).any(|i| w.state_of(i, |s| s.height().0) < target)
        && start.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let roots: Vec<Option<Hash>> = w
        .market
        .validators
        .iter()
        .map(|v| {
            v.chain
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .block(Height(target))
                .map(|b| b.state_root)
        })
        .collect();
    let agree = roots.iter().all(|r| r.is_some() && *r == roots[0]);
    let supplies: Vec<(u128, u128)> = (0..n).map(|i| w.state_of(i, |s| s.supply())).collect();
    let genesis: u128 = w
        .market
        .files
        .genesis
        .accounts
        .iter()
        .filter_map(|a| Amount::from_decimal(&a.balance))
        .map(|a| a.0)
        .sum::<u128>()
        + w.market
            .files
            .genesis
            .accounts
            .iter()
            .filter_map(|a| Amount::from_decimal(&a.bonded))
            .map(|a| a.0)
            .sum::<u128>();
    let (held, expected) = supplies[0];
    let issued = w.state(|s| s.params().issuance_per_block.0);
    let conserved = supplies.iter().all(|(h, e)| h == e) && (issued > 0 || expected == genesis);
    let burned = w.state(|s| s.meta().burned);
    let log = vec![
        format!(
            "every validator: balances + stake + unbonding + escrow + bonds + burned = {held} = genesis {genesis} (no issuance); {burned} burned by fees and penalties"
        ),
        format!(
            "height {target}: {} validators, one state root {}",
            n,
            roots[0].map(|r| r.to_string()).unwrap_or_default()
        ),
    ];
    w.check(
        "supply conserved on every validator (no token created or lost)",
        conserved,
        format!(
            "held {held}, expected {expected}, genesis {genesis} (per validator: {})",
            supplies
                .iter()
                .map(|(h, e)| format!("{h}/{e}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    w.check(
        "every validator finalized the same state (one state root at the same height)",
        agree,
        format!("height {target}"),
    );
    let missed = w.events.lagged();
    w.check(
        "the demo saw every ledger event",
        missed == 0,
        format!("{missed} missed"),
    );
    w.act(title, log);

    let accounts = w
        .parties()
        .into_iter()
        .filter_map(|name| {
            let address = w.address(&name).ok()?;
            let (acct, rep) = w.state(|s| {
                (
                    s.account(&address),
                    s.provider(&address).map(|_| s.reputation_ppm(&address)),
                )
            });
            Some(AccountReport {
                role: cast::role(&name),
                name,
                address,
                balance: acct.balance,
                bonded: acct.bonded,
                reputation_ppm: rep,
            })
        })
        .collect();
    Ok((
        SupplyReport {
            conserved,
            held: Amount(held),
            expected: Amount(expected),
            genesis: Amount(genesis),
            burned,
            height: Height(target),
            state_root: roots[0].unwrap_or(Hash([0; 32])),
            validators_agree: agree,
            events_missed: missed,
        },
        accounts,
    ))
}
