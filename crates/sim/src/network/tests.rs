use super::*;

/// A small network runs end to end: validators agree, the replay of validator 0's chain
/// reaches its root, jobs are bought, matched and paid, and the cheaters and crashes
/// show up as missed deadlines.
#[test]
fn small_network_runs_jobs_to_payment() {
    let config = NetworkConfig::small();
    let report = run(&config, &mut |_, _| {}).expect("the simulation runs");
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(report.validators_agree);
    assert!(report.replay_matches);
    assert!(report.tally.blocks > 20);
    assert!(report.tally.jobs_submitted > 0);
    // Most providers start registered; the late joiners register by transaction.
    assert!(report.providers_at_genesis > 0 && report.tally.registered > 0);
    assert!(report.tally.jobs_completed > 0);
    assert!(report.fraction_matched <= 1.0);
    assert!(
        report.tally.rejected.is_empty(),
        "{:?}",
        report.tally.rejected
    );
    // The crashed and cheating providers missed deadlines, and were penalized.
    assert!(report.tally.deadlines_missed > 0);
    assert!(report.tally.slashed > 0);
}

/// The scale issue's configuration: 100 validators, 10,000 providers (minutes; run by
/// `agentic bench scale`, or here with `--ignored`).
#[test]
#[ignore]
fn large_network() {
    // SIM_VALIDATORS / SIM_PROVIDERS / SIM_SECONDS override the configuration.
    let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let mut config = NetworkConfig::large();
    if let Some(v) = var("SIM_VALIDATORS") {
        config.validators = v as usize;
    }
    if let Some(p) = var("SIM_PROVIDERS") {
        config.providers = p as usize;
    }
    if let Some(s) = var("SIM_SECONDS") {
        config.duration = std::time::Duration::from_secs(s);
    }
    let report =
        run(&config, &mut |t, h| eprintln!("{t:?} height {h}")).expect("the simulation runs");
    eprintln!("{}", serde_json::to_string_pretty(&report).unwrap());
    assert!(report.validators_agree && report.replay_matches);
}
