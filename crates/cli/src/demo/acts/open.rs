//! Act 1: the market opens. Validators bond stake (their voting weight); each
//! provider daemon measures its speed, places itself in the network (Vivaldi
//! probes of the providers already there), bonds its stake and registers its
//! offer.

use agentic_protocol::event::Event;
use agentic_protocol::{Amount, TxBody};
use serde::Serialize;

use crate::demo::cast::{self, ProviderProfile};
use crate::demo::purchase::thousands;
use crate::demo::world::World;

/// A provider as it registered.
#[derive(Clone, Debug, Serialize)]
pub struct ProviderReport {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: agentic_protocol::Address,
    /// Its data-plane endpoint.
    pub endpoint: String,
    /// Price per mega-op.
    pub price: Amount,
    /// Region code.
    pub region: u16,
    /// Emulated slowdown.
    pub slowdown: u32,
    /// Emulated extra round trip (ms).
    pub extra_rtt_ms: u64,
    /// Measured and reported speed (ops/s).
    pub speed: u64,
    /// Its Vivaldi coordinate (x, y, height in µs).
    pub coord: [i64; 3],
    /// Bonded stake.
    pub bonded: Amount,
}

/// What the opening did.
#[derive(Clone, Debug, Serialize)]
pub struct OpenReport {
    /// Stake each validator bonded.
    pub validator_bond: Amount,
    /// The providers, in start order.
    pub providers: Vec<ProviderReport>,
}

/// Describes a running provider (`profile`) for the report.
pub fn describe(w: &World, profile: &ProviderProfile) -> anyhow::Result<ProviderReport> {
    let p = w
        .providers
        .get(profile.name)
        .ok_or_else(|| anyhow::anyhow!("provider {} is not running", profile.name))?;
    let st = p.status();
    Ok(ProviderReport {
        name: profile.name.to_string(),
        address: p.address(),
        endpoint: p.endpoint().to_string(),
        price: Amount(profile.price),
        region: profile.region,
        slowdown: profile.slowdown,
        extra_rtt_ms: profile.extra_rtt.as_millis() as u64,
        speed: st.speed,
        coord: [
            i64::from(st.coord.x),
            i64::from(st.coord.y),
            i64::from(st.coord.height),
        ],
        bonded: w.account(&p.address()).bonded,
    })
}

/// One line about a provider.
pub fn line(r: &ProviderReport, about: &str) -> String {
    format!(
        "{:<9} {} per mega-op · region {:>3} · ×{} slower, +{} ms RTT → reports {} ops/s, coordinate ({}, {}) µs · stake {} — {about}",
        r.name,
        r.price,
        r.region,
        r.slowdown,
        r.extra_rtt_ms,
        thousands(r.speed),
        r.coord[0],
        r.coord[1],
        r.bonded
    )
}

pub async fn run(w: &mut World) -> anyhow::Result<OpenReport> {
    let title = "The market opens";
    w.progress.begin(title);
    let mut log = Vec::new();

    w.progress.step("validators bond stake");
    let bond = Amount(cast::VALIDATOR_BOND);
    let validators: Vec<String> = (0..w.market.validators.len())
        .map(|i| format!("validator-{i}"))
        .collect();
    w.send_all(
        validators
            .iter()
            .map(|v| (v.clone(), TxBody::Bond { amount: bond }))
            .collect(),
    )
    .await?;
    log.push(format!(
        "{} validators run simplex consensus on loopback; each bonds {bond} (its voting weight)",
        validators.len()
    ));

    let mut providers = Vec::new();
    for profile in cast::PROVIDERS {
        w.progress.step(format!(
            "{} measures its speed, probes its peers, bonds and registers",
            profile.name
        ));
        w.start_provider(profile).await?;
        let r = describe(w, profile)?;
        log.push(line(&r, profile.about));
        providers.push(r);
    }
    let registered = w.events.select(|_, e| match e {
        Event::ProviderRegistered { provider } => Some(*provider),
        _ => None,
    });
    let all = providers.iter().all(|p| registered.contains(&p.address));
    w.check(
        "every provider daemon registered its offer on the ledger",
        all,
        format!("{} of {} registered", registered.len(), providers.len()),
    );
    let bonded_ok = validators.iter().all(|v| {
        w.address(v)
            .map(|a| w.account(&a).bonded == bond)
            .unwrap_or(false)
    });
    w.check(
        "every validator bonded its stake",
        bonded_ok,
        format!("{} × {bond}", validators.len()),
    );
    w.act(title, log);
    Ok(OpenReport {
        validator_bond: bond,
        providers,
    })
}
