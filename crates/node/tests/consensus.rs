//! Consensus scenarios under the deterministic runtime: real simplex with BLS threshold keys,
//! real marshal and storage, real ed25519 transactions, simulated lossy links. Every wait is
//! in virtual time; the assertions are about behaviour (agreement, progress, halting), never
//! about how long something took.

mod common;

use commonware_runtime::Runner as _;
use common::{assert_agree, runner, sink, submit, transfer, Net};

/// Four validators finalize blocks with transactions submitted through three of them, and
/// all report the same block and state root at every height.
#[test]
fn four_validators_agree_and_include_submitted_transactions() {
    runner(1).start(|context| async move {
        let net = Net::new(context, 4).await;
        let mut validators = Vec::new();
        for i in 0..4 {
            validators.push(net.start(i).await);
        }
        net.wait_until(|| validators.iter().all(|v| v.height() >= 2)).await;

        // Users 0..3 each send two transfers, through different validators.
        let mut ids = Vec::new();
        for user in 0..3u64 {
            for nonce in 0..2 {
                let via = &validators[(user as usize + nonce as usize) % 3];
                ids.push(submit(via, transfer(user, nonce, sink(1), 10)));
            }
        }
        net.wait_until(|| {
            validators
                .iter()
                .all(|v| ids.iter().all(|id| v.receipt(id).is_some()))
        })
        .await;
        let target = validators.iter().map(|v| v.height()).max().unwrap() + 3;
        net.wait_until(|| validators.iter().all(|v| v.height() >= target)).await;

        let refs: Vec<_> = validators.iter().collect();
        let common = assert_agree(&refs);
        assert!(common >= target);
        for v in &validators {
            assert!(ids.iter().all(|id| v.receipt(id) == Some(true)));
            assert_eq!(v.balance(&sink(1)).0, 60);
        }
    });
}
