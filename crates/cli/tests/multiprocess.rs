//! Four `agentic node run` processes on 127.0.0.1: transactions submitted over HTTP to
//! different nodes are finalized, every node reports the same state root at the same
//! height, and a node killed with SIGKILL and restarted from its data directory
//! rejoins with the same history.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agentic_client::api::TxStatus;
use agentic_client::keystore::KeyFile;
use agentic_client::Client;
use agentic_protocol::{Amount, ChainId, Hash, Height, SignedTx, Tx, TxBody};

const BIN: &str = env!("CARGO_BIN_EXE_agentic");
const N: usize = 4;

/// A base port with `N` consecutive free ports for p2p and `N` for the API after it.
fn free_base() -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..200u16 {
        let base = 20_000 + (seed.wrapping_mul(7).wrapping_add(attempt * 97) % 30_000);
        let ok = (0..2 * N as u16).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        if ok {
            return base;
        }
    }
    panic!("no free port range");
}

fn spawn_node(dir: &Path, i: usize) -> Child {
    let log = std::fs::File::create(dir.join(format!("node-{i}.log"))).unwrap();
    Command::new(BIN)
        .args(["node", "run", "--local", "--genesis"])
        .arg(dir.join("genesis.json"))
        .arg("--key")
        .arg(dir.join(format!("validator-{i}.json")))
        .arg("--data")
        .arg(dir.join(format!("data-{i}")))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

struct Nodes {
    dir: PathBuf,
    children: Vec<Option<Child>>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn height(c: &Client) -> Option<u64> {
    c.status().await.ok().map(|s| s.height.0)
}

async fn wait_height(c: &Client, h: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if height(c).await.is_some_and(|x| x >= h) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: height {h} not reached");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn root_at(c: &Client, h: u64) -> Hash {
    c.block(Height(h)).await.unwrap().state_root
}

async fn transfer(
    c: &Client,
    from: &KeyFile,
    to: &KeyFile,
    amount: u128,
    chain: u64,
    nonce: u64,
) -> Hash {
    let tx = SignedTx::sign(
        &from.key,
        Tx {
            chain_id: ChainId(chain),
            nonce,
            fee: Amount(1),
            body: TxBody::Transfer {
                to: to.address(),
                amount: Amount(amount),
            },
        },
    );
    c.submit(&tx).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_agree_and_a_killed_node_rejoins() {
    let dir = std::env::temp_dir().join(format!("agentic-mp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let base = free_base();
    let out = Command::new(BIN)
        .args(["node", "init", "--validators", "4", "--chain-id", "4242"])
        .arg("--out")
        .arg(&dir)
        .args(["--p2p-base", &base.to_string()])
        .args(["--api-base", &(base + N as u16).to_string()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut nodes = Nodes {
        dir: dir.clone(),
        children: (0..N).map(|i| Some(spawn_node(&dir, i))).collect(),
    };
    let clients: Vec<Client> = (0..N)
        .map(|i| Client::new(format!("http://127.0.0.1:{}", base + (N + i) as u16)))
        .collect();
    for (i, c) in clients.iter().enumerate() {
        wait_height(c, 1, &format!("node {i} first block")).await;
    }
    let alice = KeyFile::read(&dir.join("alice.json")).unwrap();
    let bob = KeyFile::read(&dir.join("bob.json")).unwrap();

    // Transfers submitted to different nodes, confirmed on yet another node.
    let mut ids = Vec::new();
    for nonce in 0..8u64 {
        let via = &clients[nonce as usize % N];
        ids.push(transfer(via, &alice, &bob, 10 + u128::from(nonce), 4242, nonce).await);
        // Let gossip carry each one before the next nonce arrives elsewhere.
        via.wait(ids.last().unwrap(), Duration::from_secs(60))
            .await
            .unwrap();
    }
    for id in &ids {
        let r = clients[3].wait(id, Duration::from_secs(60)).await.unwrap();
        assert!(r.result.ok, "{r:?}");
    }
    let bob_balance = clients[1]
        .account(&bob.address())
        .await
        .unwrap()
        .account
        .balance;
    assert_eq!(
        bob_balance,
        Amount(1_000_000_000_000u128 + (10..18).sum::<u128>())
    );

    // Same root at the same height on every node.
    let common = {
        let mut hs = Vec::new();
        for c in &clients {
            hs.push(height(c).await.unwrap());
        }
        *hs.iter().min().unwrap()
    };
    let root = root_at(&clients[0], common).await;
    for c in &clients[1..] {
        assert_eq!(root_at(c, common).await, root, "roots differ at {common}");
    }

    // SIGKILL node 2 mid-flight; the other three keep finalizing.
    let before_kill = height(&clients[2]).await.unwrap();
    let root_before_kill = root_at(&clients[2], before_kill).await;
    {
        let mut child = nodes.children[2].take().unwrap();
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
    }
    let id = transfer(&clients[0], &alice, &bob, 1, 4242, 8).await;
    clients[1].wait(&id, Duration::from_secs(60)).await.unwrap();
    let h0 = height(&clients[0]).await.unwrap();

    // Restart it from its data directory: it replays its own blocks, then catches up.
    nodes.children[2] = Some(spawn_node(&nodes.dir, 2));
    wait_height(&clients[2], h0, "restarted node catches up").await;
    assert_eq!(
        root_at(&clients[2], before_kill).await,
        root_before_kill,
        "the restarted node's history changed"
    );
    assert_eq!(
        root_at(&clients[2], h0).await,
        root_at(&clients[0], h0).await
    );
    let r = clients[2].tx(&id).await.unwrap();
    assert!(matches!(r, TxStatus::Finalized(_)), "{r:?}");
    // And it keeps taking part: a transaction submitted to it is finalized everywhere.
    let id = transfer(&clients[2], &alice, &bob, 1, 4242, 9).await;
    for c in &clients {
        let r = c.wait(&id, Duration::from_secs(60)).await.unwrap();
        assert!(r.result.ok, "{r:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
