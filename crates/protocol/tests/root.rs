//! The incremental state root over big blocks: blocks longer than the eager
//! hand-off chunk (old account values are removed from the root on another
//! thread while later transactions apply) must give exactly the root of a
//! full rebuild, with new accounts, rejected transactions and accounts
//! touched in several chunks.

use agentic_protocol::state::Block;
use agentic_protocol::test_utils::{address_of, key, GenesisBuilder, TestReferee};
use agentic_protocol::tx::{SignedTx, Tx, TxBody};
use agentic_protocol::types::{Amount, ChainId, Height};
use agentic_protocol::State;

#[test]
fn big_blocks_match_a_full_rebuild() {
    let senders: Vec<_> = (1..=300u64).map(key).collect();
    let mut g = GenesisBuilder::new(3);
    for k in &senders {
        g = g.account(address_of(k), 1_000_000, 0);
    }
    let mut state = State::new(&g.build()).expect("genesis");
    let referee = TestReferee::default();
    let mut nonces = vec![0u64; senders.len()];
    for height in 1..=3u64 {
        let mut txs = Vec::new();
        for i in 0..3_000usize {
            let from = (i * 13 + height as usize) % senders.len();
            // Every 7th transfer creates a fresh account; every 11th overdraws and is rejected.
            let to = if i % 7 == 0 {
                address_of(&key(10_000 + height * 10_000 + i as u64))
            } else {
                address_of(&senders[(i * 31) % senders.len()])
            };
            let amount = if i % 11 == 0 {
                10_000_000
            } else {
                1 + (i as u128 % 5)
            };
            let nonce = nonces[from];
            if i % 11 != 0 {
                nonces[from] += 1;
            }
            txs.push(SignedTx::sign(
                &senders[from],
                Tx {
                    chain_id: ChainId(3),
                    nonce,
                    fee: Amount(1),
                    body: TxBody::Transfer {
                        to,
                        amount: Amount(amount),
                    },
                },
            ));
        }
        let out = state
            .apply_block(
                &Block {
                    height: Height(height),
                    beacon: [height as u8; 32],
                    txs,
                },
                &referee,
            )
            .expect("block applies");
        assert!(
            out.receipts.iter().any(|r| r.is_err()),
            "some transfers are rejected"
        );
        assert!(out.receipts.iter().filter(|r| r.is_ok()).count() > 2_000);
        assert_eq!(
            out.root,
            state.full_root(),
            "incremental root at height {height}"
        );
        assert!(state.total_supply_check());
    }
    // Twin state: the same blocks give the same root (covered elsewhere), and an
    // empty block after big ones keeps the incremental root exact.
    let out = state
        .apply_block(
            &Block {
                height: Height(4),
                beacon: [4; 32],
                txs: vec![],
            },
            &referee,
        )
        .expect("empty block");
    assert_eq!(out.root, state.full_root());
}
