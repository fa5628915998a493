//! Who plays in the demo, and the market's rules for the day.
//!
//! Every party is a funded key of the local market (`NAME.json` in its
//! directory). The providers run on this one machine, so their differences are
//! emulated by the daemon itself: `slowdown` makes execution take that many
//! times its real time (and divides the speed it measures and reports), and
//! `extra_rtt` delays every round trip through its data plane, which its
//! Vivaldi coordinate then reflects.

use std::time::Duration;

use agentic_provider::Misbehaviour;

/// A provider of the story: a machine somewhere, at a price.
#[derive(Clone, Copy, Debug)]
pub struct ProviderProfile {
    /// Account and daemon name.
    pub name: &'static str,
    /// Price per mega-op (base units per 10^6 metered operations).
    pub price: u128,
    /// Region code (ISO 3166 numeric).
    pub region: u16,
    /// Emulated slower hardware (1: this machine's speed).
    pub slowdown: u32,
    /// Emulated access-link round-trip delay.
    pub extra_rtt: Duration,
    /// Bonded stake it keeps.
    pub stake: u128,
    /// One line about it for the report.
    pub about: &'static str,
    /// How it cheats (`None`: an honest daemon).
    pub misbehave: Option<Misbehaviour>,
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The providers that open the market, in start order.
pub const PROVIDERS: &[ProviderProfile] = &[
    ProviderProfile {
        name: "frankfurt",
        price: 1_200,
        region: 276,
        slowdown: 1,
        extra_rtt: ms(2),
        stake: 20_000,
        about: "fast, close, the dearest",
        misbehave: None,
    },
    ProviderProfile {
        name: "virginia",
        price: 1_000,
        region: 840,
        slowdown: 2,
        extra_rtt: ms(15),
        stake: 20_000,
        about: "half as fast",
        misbehave: None,
    },
    ProviderProfile {
        name: "saopaulo",
        price: 900,
        region: 76,
        slowdown: 3,
        extra_rtt: ms(30),
        stake: 20_000,
        about: "a third as fast, further away",
        misbehave: None,
    },
    ProviderProfile {
        name: "singapore",
        price: 800,
        region: 702,
        slowdown: 4,
        extra_rtt: ms(45),
        stake: 20_000,
        about: "a quarter as fast, far away, the cheapest",
        misbehave: None,
    },
];

/// The provider that joins later and dies in the middle of a job: an old machine
/// (a thousand times slower), so it is still computing when it is killed.
/// Providers that join for the LLM act: the chat completion needs six distinct
/// providers (three stages, three auditors, never one twice in a job).
pub const LLM_PROVIDERS: &[ProviderProfile] = &[
    ProviderProfile {
        name: "tokyo",
        price: 1_100,
        region: 392,
        slowdown: 1,
        extra_rtt: ms(35),
        stake: 20_000,
        about: "joins for LLM work",
        misbehave: None,
    },
    ProviderProfile {
        name: "sydney",
        price: 1_300,
        region: 36,
        slowdown: 1,
        extra_rtt: ms(40),
        stake: 20_000,
        about: "joins for LLM work",
        misbehave: None,
    },
];

pub const VICTIM: ProviderProfile = ProviderProfile {
    name: "mumbai",
    price: 700,
    region: 356,
    slowdown: 1_000,
    extra_rtt: ms(25),
    stake: 20_000,
    about: "an old machine that crashes mid-job",
    misbehave: None,
};

/// The provider that joins to cheat: the cheapest offer, and a daemon told to
/// perturb one layer's output by one ulp and compute on from there.
pub const CHEATER: ProviderProfile = ProviderProfile {
    name: "lagos",
    price: 600,
    region: 566,
    slowdown: 1,
    extra_rtt: ms(20),
    stake: 20_000,
    about: "the cheapest offer — its daemon perturbs one layer by one ulp",
    misbehave: Some(Misbehaviour::PerturbUlp),
};

/// Least reputation (ppm) an audited job asks of its providers and auditor: a
/// provider that just failed a job (act 4's) does not audit.
pub const AUDIT_MIN_REPUTATION_PPM: u32 = 200_000;

/// The requester who buys the pipeline jobs.
pub const REQUESTER: &str = "alice";
/// The principal who grants a mandate.
pub const PRINCIPAL: &str = "bob";
/// The agent spending under bob's mandate.
pub const AGENT: &str = "bob-agent";
/// The requester's and the principal's genesis balance.
pub const BUYER_BALANCE: u128 = 1_000_000;
/// The agent's own balance: it pays only its transaction fees.
pub const AGENT_BALANCE: u128 = 1_000;
/// Each provider's genesis balance (its stake is bonded from it).
pub const PROVIDER_BALANCE: u128 = 100_000;
/// Stake each validator bonds at the start (its voting weight in governance).
pub const VALIDATOR_BOND: u128 = 100_000;

/// The principal's genesis balance: it funds the agent's purchases, an LLM's among
/// them (a generation meters hundreds of mega-ops per token).
pub const PRINCIPAL_BALANCE: u128 = 200_000_000;

/// The LLM the agent buys a chat completion from (fetched on first use).
pub const LLM: &str = "smollm2-135m";
/// Blocks the providers of a generation have to commit once matched (the session
/// runs first; the model loads on first use).
pub const LLM_DEADLINE: u64 = 300;

/// The model every job runs (the shipped byte-level GPT).
pub const MODEL: &str = "tiny-gpt";
/// Highest price per mega-op the requester pays.
pub const MAX_PRICE: u128 = 5_000;
/// Highest price per mega-op the mandate lets the agent offer.
pub const MANDATE_UNIT_PRICE: u128 = 2_000;
/// Blocks a provider has to commit its stage once assigned and its input agreed.
pub const DEADLINE: u64 = 30;

/// Genesis parameters that differ from the defaults: windows short enough for a
/// demo whose blocks come every ~100 ms, long enough for every daemon to act.
pub const PARAMS: &[(&str, u64)] = &[
    ("reveal_window", 40),
    ("challenge_window", 4),
    ("match_timeout", 40),
    ("audit_window", 100),
    ("voting_period", 10),
    ("activation_delay", 5),
];

/// Every funded account and its genesis balance (validators get the local
/// market's default).
pub fn users() -> Vec<(String, Option<u128>)> {
    let mut v = vec![
        (REQUESTER.to_string(), Some(BUYER_BALANCE)),
        (PRINCIPAL.to_string(), Some(PRINCIPAL_BALANCE)),
        (AGENT.to_string(), Some(AGENT_BALANCE)),
    ];
    v.extend(
        PROVIDERS
            .iter()
            .chain(LLM_PROVIDERS)
            .chain([&VICTIM, &CHEATER])
            .map(|p| (p.name.to_string(), Some(PROVIDER_BALANCE))),
    );
    v
}

/// The role of a party, for the accounts table.
pub fn role(name: &str) -> &'static str {
    match name {
        REQUESTER => "requester",
        PRINCIPAL => "principal",
        AGENT => "agent",
        n if n == VICTIM.name => "provider (crashes)",
        n if n == CHEATER.name => "provider (cheats)",
        n if n.starts_with("validator-") => "validator",
        _ => "provider",
    }
}
