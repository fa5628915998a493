//! `agentic bench verify` through the built binary with small market runs: the JSON has
//! the documented figures, the best cheating strategy — single or coalition — loses money
//! in expectation, honest work is always paid, the referee re-executes exactly one layer,
//! and the bisection takes the ledger's ⌈log2 layers⌉ rounds. No timing is asserted.

use std::process::Command;

use serde_json::Value;

/// `⌈log2 n⌉` (0 for `n ≤ 1`).
fn ceil_log2(n: u64) -> u64 {
    if n <= 1 {
        0
    } else {
        u64::from(u64::BITS - (n - 1).leading_zeros())
    }
}

#[test]
fn small_run_has_the_figures_and_cheating_does_not_pay() {
    let out = Command::new(env!("CARGO_BIN_EXE_agentic"))
        .args(["bench", "verify", "--json"])
        .args([
            "--jobs",
            "400",
            "--jobs-per-block",
            "40",
            "--providers",
            "10",
        ])
        .args(["--cheaters", "0.3", "--seed", "11"])
        .output()
        .expect("run agentic");
    assert!(
        out.status.success(),
        "bench verify failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");

    for key in [
        "ratio",
        "audit_overhead",
        "referee_fraction",
        "max_cheater_profit",
        "honest_earnings",
        "detection_rate",
    ] {
        assert!(v[key].as_f64().is_some_and(f64::is_finite), "{key}: {v}");
    }
    assert_eq!(v["bench"], "verify");

    // Audits: a share of the work, against the Audited baseline that re-executes it all.
    let overhead = v["audit_overhead"].as_f64().unwrap();
    assert!(overhead > 0.0 && overhead < 1.0, "{overhead}");
    assert_eq!(v["audit"]["baseline_audited_overhead"].as_f64(), Some(1.0));

    // A training dispute: bisected to the corrupted step, then to its unit; one unit of
    // one step re-executed, a small share of the job; the cheater slashed.
    let t = &v["training_referee"];
    let steps = t["steps"].as_u64().unwrap();
    let units = t["step_units"].as_u64().unwrap();
    assert_eq!(t["referee_units"], 1, "{t}");
    assert_eq!(
        t["referee_index"].as_u64(),
        Some(t["disputed_step"].as_u64().unwrap() * units + t["disputed_unit"].as_u64().unwrap()),
        "{t}"
    );
    // Each level takes at most the ledger's ⌈log2⌉ rounds of its leaves.
    let (sr, ur) = (
        t["step_rounds"].as_u64().unwrap(),
        t["unit_rounds"].as_u64().unwrap(),
    );
    assert!((1..=ceil_log2(steps)).contains(&sr), "{t}");
    assert!((1..=ceil_log2(units)).contains(&ur), "{t}");
    let tf = t["fraction"].as_f64().unwrap();
    assert!(tf > 0.0 && tf < 1.0 / steps as f64, "{t}");
    assert!(t["cheater_slashed"].as_f64().unwrap() > 0.0, "{t}");

    // Economics: every cheating strategy loses in expectation; honest work earns.
    assert!(v["max_cheater_profit"].as_f64().unwrap() < 0.0, "{v}");
    assert!(v["honest_earnings"].as_f64().unwrap() > 0.0);
    let strategies = v["simulation"]["strategies"].as_object().unwrap();
    for s in [
        "wrong_output",
        "perturbed_layer",
        "smaller_model",
        "random_output",
        "copy_replica",
        "silent_in_dispute",
    ] {
        let st = &strategies[s];
        assert!(st["jobs"].as_u64().unwrap() > 0, "{s} took no job");
        assert!(
            st["expected_profit_per_job"].as_f64().unwrap() < 0.0,
            "{s}: {st}"
        );
    }
    assert_eq!(
        strategies["copy_replica"]["detection_rate"].as_f64(),
        Some(1.0)
    );

    // Coalitions: every strategy took jobs and loses in expectation, in every variant;
    // `max_cheater_profit` covers them all.
    let coalitions = v["coalitions"].as_object().unwrap();
    for s in [
        "auditor_sybil",
        "unbond_then_lose",
        "echo_replica",
        "penalty_farming",
        "retire_while_disputed",
    ] {
        let c = &coalitions[s];
        let best = c["expected_profit_per_job"].as_f64().unwrap();
        assert!(best < 0.0, "{s}: {c}");
        assert!(best <= v["max_cheater_profit"].as_f64().unwrap());
        let variants = c["variants"].as_array().unwrap();
        assert!(!variants.is_empty(), "{s}");
        for x in variants {
            assert!(x["jobs"].as_u64().unwrap() > 0, "{s} took no job: {x}");
            assert!(
                x["expected_profit_per_job"].as_f64().unwrap() < 0.0,
                "{s}: {x}"
            );
        }
    }
    assert!(v["max_coalition_profit"].as_f64().unwrap() < 0.0, "{v}");
    assert!(
        v["max_single_cheater_profit"].as_f64().unwrap() < 0.0,
        "{v}"
    );
    // A slot freed after a reveal is never refilled (no echo), and a requester whose
    // data nobody can fetch pays the claimant instead of collecting penalties.
    for x in coalitions["echo_replica"]["variants"].as_array().unwrap() {
        assert_eq!(x["refills_after_reveal"], 0, "{x}");
    }
    for x in coalitions["penalty_farming"]["variants"]
        .as_array()
        .unwrap()
    {
        assert_eq!(x["miss_penalties_collected"].as_f64(), Some(0.0), "{x}");
        assert!(x["compensation_paid"].as_f64().unwrap() > 0.0, "{x}");
    }

    // Honest work is paid in full in every run, and the ledger's audit draws are the
    // ones the bench predicted (its probabilities are the ledger's).
    assert_eq!(v["honest_unpaid"].as_f64(), Some(0.0), "{v}");
    assert!(v["honest_delivered"].as_f64().unwrap() > 0.0);
    assert_eq!(v["supply_conserved"], true);
    assert_eq!(v["simulation"]["unreconciled_accounts"], 0);
    assert_eq!(v["simulation"]["audit_predictions_wrong"], 0);
    assert_eq!(v["simulation"]["honest_providers_slashed"], 0);
    assert_eq!(v["simulation"]["outcomes_not_as_modelled"], 0);
    for run in v["runs"].as_array().unwrap() {
        assert_eq!(run["supply_conserved"], true, "{run}");
        assert_eq!(run["honest_deadline_misses"], 0, "{run}");
    }
    let i = &v["inequality"];
    assert_eq!(i["holds"], true, "{i}");
    assert_eq!(i["mean_stage"]["holds"], true, "{i}");
    assert!(i["expected_slash"].as_f64().unwrap() >= i["expected_gain"].as_f64().unwrap());
    assert!(i["p"].as_f64().unwrap() >= i["p_min"].as_f64().unwrap());

    // Referee: exactly one layer re-executed per dispute, metered as that layer.
    let r = &v["referee"];
    let layers = r["layers"].as_u64().unwrap();
    assert!(layers >= 2);
    assert_eq!(r["layers_reexecuted"], 1);
    assert_eq!(r["job_ops"], r["job_ops_model_run"]);
    let disputes = r["disputes"].as_array().unwrap();
    assert_eq!(disputes.len() as u64, layers, "one real dispute per layer");
    for d in disputes {
        assert_eq!(d["referee_calls"], 1, "{d}");
        assert_eq!(d["referee_layers"], 1, "{d}");
        assert_eq!(d["referee_layer"], d["disputed_layer"], "{d}");
        assert_eq!(d["referee_ops"], d["metered_layer_ops"], "{d}");
        assert!(d["cheater_slashed"].as_f64().unwrap() > 0.0);
    }
    let fraction = v["referee_fraction"].as_f64().unwrap();
    assert!(fraction > 0.0 && fraction < 1.0);

    // Bisection: a trace of `layers + 1` leaves narrows in ⌈log2 layers⌉ rounds (the
    // ledger's bound, attained for every disputed layer when `layers` is a power of two),
    // never more than ⌈log2(layers + 1)⌉.
    let rounds = v["bisection_rounds"].as_u64().unwrap();
    assert_eq!(
        v["bisection"]["ledger_bound"].as_u64(),
        Some(ceil_log2(layers))
    );
    assert!(rounds <= ceil_log2(layers + 1));
    for d in disputes {
        let k = d["rounds"].as_u64().unwrap();
        assert!(k >= 1 && k <= ceil_log2(layers), "{d}");
        if layers.is_power_of_two() {
            assert_eq!(k, ceil_log2(layers), "{d}");
        }
    }
}
