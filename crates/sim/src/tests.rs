//! The simulator as a whole: a run is a function of its config, and at the ledger's
//! default parameters no cheating strategy, single or coalition, pays.

use crate::test_utils::{small, LinearMeter};
use crate::workload::JobPlan;
use crate::{run, Config, Error, Strategy};

#[test]
fn the_same_seed_gives_the_same_report() {
    let config = Config {
        jobs: 200,
        ..small(11)
    };
    let a = run(&config, &LinearMeter, &mut ()).expect("first run");
    let b = run(&config, &LinearMeter, &mut ()).expect("second run");
    assert_eq!(format!("{a:?}"), format!("{b:?}"));

    let other = run(&Config { seed: 12, ..config }, &LinearMeter, &mut ()).expect("other seed");
    assert_ne!(
        format!("{a:?}"),
        format!("{other:?}"),
        "the seed changes nothing"
    );
}

#[test]
fn no_cheating_strategy_pays_at_the_default_params() {
    let r = run(&small(11), &LinearMeter, &mut ()).expect("run");

    // Every single cheat took jobs and loses in expectation, at every stake.
    for s in Strategy::CHEATS {
        let f = &r.simulation.strategies[s.name()];
        assert!(f.jobs > 0, "{} took no job", s.name());
        assert!(f.expected_profit_per_job < 0.0, "{}: {f:?}", s.name());
        for x in &f.by_stake {
            assert!(
                x.expected_profit_per_job < 0.0,
                "{} at {}: {x:?}",
                s.name(),
                x.stake
            );
        }
    }
    // So does every coalition variant.
    for (name, c) in &r.coalitions {
        assert!(!c.variants.is_empty(), "{name}");
        for v in &c.variants {
            assert!(v.expected_profit_per_job < 0.0, "{name}: {v:?}");
        }
    }
    assert!(r.max_single_cheater_profit < 0.0, "{:?}", r.best_cheat);
    assert!(r.max_coalition_profit < 0.0, "{:?}", r.best_cheat);
    assert!(r.max_cheater_profit < 0.0, "{:?}", r.best_cheat);
    assert_eq!(
        r.max_cheater_profit,
        r.max_single_cheater_profit.max(r.max_coalition_profit)
    );

    // Honest work is paid in full, and the simulator's own checks hold.
    assert!(r.honest_delivered > 0.0);
    assert_eq!(r.honest_unpaid, 0.0);
    assert!(r.honest_earnings > 0.0);
    assert!(r.supply_conserved);
    assert_eq!(r.simulation.audit_predictions_wrong, 0);
    assert_eq!(r.simulation.unreconciled_accounts, 0);
    assert_eq!(r.simulation.honest_providers_slashed, 0);
    assert_eq!(r.simulation.outcomes_not_as_modelled, 0);
    assert!(r.inequality.largest.holds && r.inequality.mean_stage.holds);
}

#[test]
fn a_config_that_cannot_run_is_refused() {
    let bad = [
        Config {
            jobs: 0,
            ..Config::DEFAULT
        },
        Config {
            coalition: 1,
            ..Config::DEFAULT
        },
        Config {
            cheaters: 1.5,
            ..Config::DEFAULT
        },
        Config {
            pipelines: -0.1,
            ..Config::DEFAULT
        },
    ];
    for c in bad {
        assert!(
            matches!(run(&c, &LinearMeter, &mut ()), Err(Error::Config(_))),
            "{c:?}"
        );
    }
    assert!(Config::default().validate().is_ok());
}

#[test]
fn a_pipeline_splits_the_layers_in_two_halves() {
    let plan = JobPlan {
        layer_ops: vec![1, 2, 3, 4, 5],
        ops: 15,
        input: agentic_protocol::Hash::digest("test", &[]),
        cheat_draw: 0.0,
        pipeline: true,
        pick: 0,
        pick2: 0,
    };
    let one = plan.spans(1);
    assert_eq!((one[0].first, one[0].layers, one[0].ops), (0, 5, 15));
    let two = plan.spans(2);
    assert_eq!((two[0].first, two[0].layers, two[0].ops), (0, 2, 3));
    assert_eq!((two[1].first, two[1].layers, two[1].ops), (2, 3, 12));
    assert_eq!(two[1].layer_ops, vec![3, 4, 5]);
}

#[test]
fn the_single_cheats_carry_the_provider_daemons_mode_names() {
    let modes: Vec<_> = Strategy::CHEATS
        .iter()
        .map(|s| s.misbehaviour().expect("a single cheat has a mode"))
        .collect();
    assert_eq!(
        modes,
        [
            "wrong-output",
            "perturb-ulp",
            "smaller-model",
            "random",
            "copy-replica",
            "silent"
        ]
    );
    assert_eq!(Strategy::Honest.misbehaviour(), None);
}
