//! The cast of a market run: honest providers, single cheaters, coalitions, and the
//! targets the cheating share of the jobs goes to.
//!
//! ```text
//!   honest providers  stakes 10k · 31.6k · 100k · 316k · 1M (round robin), prices 8–12,
//!                     joining over the first half of the run (three before the first job)
//!   single cheaters   6 strategies × stakes 10k / 100k / 1M, price 10        (cheater run)
//!   coalitions        auditor_sybil × 6 variants, unbond_then_lose × 2,    (coalition run)
//!                     echo_replica, penalty_farming (a requester),
//!                     retire_while_disputed × 3
//!   targets           one per cheater or coalition, taken round robin by cheating jobs
//! ```
//!
//! Provider keys are `test_utils::key(101 + i)` in the order they are added, so a run's
//! addresses depend only on its cast.

use agentic_protocol::test_utils::{address_of, key};
use agentic_protocol::Address;
use commonware_cryptography::ed25519::PrivateKey;

use crate::strategy::{CoalitionKind, Strategy};
use crate::workload::Workload;

/// Single cheaters' stakes: the minimum, 10×, 100×.
pub(crate) const CHEATER_STAKES: [u128; 3] = [10_000, 100_000, 1_000_000];
/// Single cheaters' price (mid-range of the honest 8–12).
pub(crate) const CHEATER_PRICE: u128 = 10;
/// Coalitions post the cheapest offers (honest prices are 8–12).
pub(crate) const COALITION_PRICE: u128 = 7;
/// `auditor_sybil` variants: (worker stake, each partner's stake, worker price). At the
/// cheapest price a new worker's reputation sets its audit probability; at the job's
/// max price its stage is worth enough that the value floor `V / (V + S)` sets it.
pub(crate) const SYBIL_VARIANTS: [(u128, u128, u128); 6] = [
    (10_000, 10_000, COALITION_PRICE),
    (100_000, 100_000, COALITION_PRICE),
    (1_000_000, 1_000_000, COALITION_PRICE),
    (10_000, 1_000_000, COALITION_PRICE),
    (10_000, 10_000, MAX_PRICE),
    (10_000, 1_000_000, MAX_PRICE),
];
/// `echo_replica`: the withholder at the minimum stake, partners at 10×.
pub(crate) const ECHO_VARIANT: (u128, u128) = (10_000, 100_000);
/// `unbond_then_lose` stakes (at the minimum there is nothing it may unbond).
pub(crate) const UNBOND_STAKES: [u128; 2] = [100_000, 1_000_000];
/// `retire_while_disputed` bonded stakes; each also has as much again withdrawable.
pub(crate) const RETIRE_STAKES: [u128; 3] = [10_000, 100_000, 1_000_000];
/// Job max price (the dearest honest provider).
pub(crate) const MAX_PRICE: u128 = 12;

/// A provider of the market and how it behaves.
pub(crate) struct Actor {
    pub(crate) key: PrivateKey,
    pub(crate) addr: Address,
    pub(crate) strategy: Strategy,
    /// The slashable stake it keeps (bonded again after slashes and penalties).
    pub(crate) stake: u128,
    /// Bonded at genesis.
    pub(crate) bonded: u128,
    pub(crate) price: u128,
    /// Block at which it registers.
    pub(crate) join: u64,
    pub(crate) coalition: Option<usize>,
}

/// A coalition strategy's identities.
pub(crate) struct Coalition {
    pub(crate) kind: CoalitionKind,
    /// The identity the jobs are placed on (none for the farming requester).
    pub(crate) worker: Option<usize>,
    pub(crate) partners: Vec<usize>,
    pub(crate) worker_stake: u128,
    pub(crate) partner_stake: u128,
    pub(crate) worker_price: u128,
}

impl Coalition {
    pub(crate) fn members(&self) -> impl Iterator<Item = usize> + '_ {
        self.worker.into_iter().chain(self.partners.iter().copied())
    }
}

/// Where a cheating job goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Provider(usize),
    /// Posted by the farming requester of that coalition, on an honest provider.
    Farmer(usize),
}

/// Everyone in a market run.
pub(crate) struct Cast {
    pub(crate) actors: Vec<Actor>,
    pub(crate) coalitions: Vec<Coalition>,
    pub(crate) targets: Vec<Target>,
}

impl Cast {
    /// The honest providers, plus the single cheaters if `singles`, plus the coalitions
    /// of `coalition` identities if given.
    pub(crate) fn new(w: &Workload, singles: bool, coalition: Option<usize>) -> Cast {
        let mut cast = Cast {
            actors: Vec::new(),
            coalitions: Vec::new(),
            targets: Vec::new(),
        };
        let spread = (w.submit_blocks() / 2).max(1);
        for i in 0..w.providers {
            // Stakes 10k, 31.6k, 100k, 316k, 1M; prices 8–12; joining over the first half,
            // three of them before the first job (a pipeline's two providers and an
            // auditor: with fewer, the ledger opens a stage's reveals unaudited).
            let stake = [10_000, 31_623, 100_000, 316_228, 1_000_000][i % 5];
            let late = i.saturating_sub(2) as u64;
            cast.add(
                Strategy::Honest,
                stake,
                8 + ((i * 3) % 5) as u128,
                w.first_job - 1 + (late * spread) / w.providers as u64,
                None,
            );
        }
        if singles {
            for s in Strategy::CHEATS {
                for stake in CHEATER_STAKES {
                    let i = cast.add(s, stake, CHEATER_PRICE, 1, None);
                    cast.targets.push(Target::Provider(i));
                }
            }
        }
        if let Some(k) = coalition {
            for (worker, partner, price) in SYBIL_VARIANTS {
                cast.coalition(
                    CoalitionKind::AuditorSybil,
                    (Strategy::SybilWorker, worker, price),
                    (Strategy::SybilPartner, partner, k - 1),
                    COALITION_PRICE,
                );
            }
            for stake in UNBOND_STAKES {
                cast.coalition(
                    CoalitionKind::UnbondThenLose,
                    (Strategy::UnbondThenLose, stake, CHEATER_PRICE),
                    (Strategy::Honest, 0, 0),
                    CHEATER_PRICE,
                );
            }
            let (worker, partner) = ECHO_VARIANT;
            cast.coalition(
                CoalitionKind::EchoReplica,
                (Strategy::EchoWithholder, worker, COALITION_PRICE),
                (Strategy::EchoPartner, partner, k - 1),
                COALITION_PRICE,
            );
            let c = cast.coalitions.len();
            cast.coalitions.push(Coalition {
                kind: CoalitionKind::PenaltyFarming,
                worker: None,
                partners: Vec::new(),
                worker_stake: 0,
                partner_stake: 0,
                worker_price: 0,
            });
            cast.targets.push(Target::Farmer(c));
            for stake in RETIRE_STAKES {
                cast.coalition(
                    CoalitionKind::RetireWhileDisputed,
                    (Strategy::RetireWhileDisputed, stake, CHEATER_PRICE),
                    (Strategy::Honest, 0, 0),
                    CHEATER_PRICE,
                );
            }
        }
        cast
    }

    /// Adds a provider (keys from seed 101 on, in order) and returns its index.
    fn add(
        &mut self,
        strategy: Strategy,
        stake: u128,
        price: u128,
        join: u64,
        coalition: Option<usize>,
    ) -> usize {
        let k = key(101 + self.actors.len() as u64);
        // A provider that retires while disputed keeps as much again as it bonds
        // withdrawable: bonded twice at genesis, half unbonded at registration.
        let slashable = if strategy == Strategy::RetireWhileDisputed {
            2 * stake
        } else {
            stake
        };
        self.actors.push(Actor {
            addr: address_of(&k),
            key: k,
            strategy,
            stake: slashable,
            bonded: slashable,
            price,
            join,
            coalition,
        });
        self.actors.len() - 1
    }

    fn coalition(
        &mut self,
        kind: CoalitionKind,
        (worker, worker_stake, worker_price): (Strategy, u128, u128),
        (partner, partner_stake, partners): (Strategy, u128, usize),
        price: u128,
    ) {
        let c = self.coalitions.len();
        let w = self.add(worker, worker_stake, worker_price, 1, Some(c));
        let partners = (0..partners)
            .map(|_| self.add(partner, partner_stake, price, 1, Some(c)))
            .collect();
        self.coalitions.push(Coalition {
            kind,
            worker: Some(w),
            partners,
            worker_stake,
            partner_stake,
            worker_price,
        });
        self.targets.push(Target::Provider(w));
    }
}
