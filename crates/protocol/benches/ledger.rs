//! Ledger hot paths: apply-only transfers, batched signature verification,
//! and the signed path (verify + apply).

use agentic_protocol::state::Block;
use agentic_protocol::test_utils::{address_of, key, GenesisBuilder, TestReferee};
use agentic_protocol::tx::{verify_batch, SignedTx, Tx, TxBody, TX_NAMESPACE};
use agentic_protocol::types::{Amount, ChainId, Height};
use agentic_protocol::State;
use commonware_cryptography::{ed25519::PublicKey, BatchEntry, BatchVerifier};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const ACCOUNTS: u64 = 1_000;
const BLOCK: usize = 10_000;

fn setup() -> (State, Block) {
    let keys: Vec<_> = (0..ACCOUNTS).map(key).collect();
    let mut g = GenesisBuilder::new(1);
    for k in &keys {
        g = g.account(address_of(k), 1_000_000_000, 0);
    }
    let state = State::new(&g.build()).expect("genesis");
    let mut nonces = vec![0u64; keys.len()];
    let txs: Vec<SignedTx> = (0..BLOCK)
        .map(|i| {
            let from = i % keys.len();
            let to = address_of(&keys[(i * 7 + 1) % keys.len()]);
            let nonce = nonces[from];
            nonces[from] += 1;
            SignedTx::sign(
                &keys[from],
                Tx {
                    chain_id: ChainId(1),
                    nonce,
                    fee: Amount(1),
                    body: TxBody::Transfer {
                        to,
                        amount: Amount(1),
                    },
                },
            )
        })
        .collect();
    (
        state,
        Block {
            height: Height(1),
            beacon: [0; 32],
            txs,
        },
    )
}

fn bench(c: &mut Criterion) {
    let (state, block) = setup();
    let ok = vec![true; block.txs.len()];
    let referee = TestReferee::default();
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(block.txs.len() as u64));
    g.sample_size(10);
    g.bench_function("apply_only_transfers", |b| {
        b.iter_batched(
            || state.clone(),
            |mut s| {
                s.apply_block_preverified(&block, &ok, &referee)
                    .expect("applies")
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("verify_batch", |b| b.iter(|| verify_batch(&block.txs)));
    // Reference: commonware's own ed25519 batch verification of the whole
    // block as one call on all rayon threads (no per-transaction results).
    let strategy = commonware_parallel::Rayon::new(
        std::num::NonZeroUsize::new(rayon::current_num_threads()).expect("threads"),
    )
    .expect("pool");
    g.bench_function("raw_ed25519_batch", |b| {
        b.iter(|| {
            assert!(PublicKey::verify_batch(
                &mut commonware_utils::test_rng(),
                &block.txs,
                |_, t| BatchEntry {
                    namespace: TX_NAMESPACE,
                    message: t.payload(),
                    public_key: t.signer(),
                    signature: t.signature(),
                },
                &strategy,
            ))
        })
    });
    g.bench_function("signed_path", |b| {
        b.iter_batched(
            || state.clone(),
            |mut s| s.apply_block(&block, &referee).expect("applies"),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
