//! The data plane alone, over real HTTP on loopback: a blob is stored only under its
//! own hash (a wrong one is refused, from a PUT or from a lying peer), downloads
//! resume from their `.part` file, and a corrupt partial file is thrown away.

/// Session links: the stage that sends a bad frame is the one blamed.
#[path = "dataplane/session_blame.rs"]
mod session_blame;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentic_client::blobs::BlobStore;
use agentic_client::{Client, ClientError};
use agentic_protocol::coord::VivaldiNode;
use agentic_protocol::{Address, Hash};
use agentic_provider::dataplane::{self, FetchError, Fetcher, PlaneState};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

fn temp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("agentic-dataplane-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

fn blob(n: usize) -> (Vec<u8>, Hash) {
    let bytes: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
    let hash = Hash(*blake3::hash(&bytes).as_bytes());
    (bytes, hash)
}

/// A peer serving `bytes` under any name, honouring `Range`, counting what it sends.
#[derive(Clone)]
struct Peer {
    bytes: Arc<Vec<u8>>,
    sent: Arc<AtomicU64>,
}

async fn peer_get(State(p): State<Peer>, headers: HeaderMap) -> Response {
    let len = p.bytes.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| {
            let (a, b) = v.split_once('-')?;
            let a: u64 = a.parse().ok()?;
            let b: u64 = if b.is_empty() {
                len - 1
            } else {
                b.parse().ok()?
            };
            Some((a, b.min(len - 1)))
        });
    match range {
        Some((a, b)) if a <= b => {
            let body = p.bytes[a as usize..=b as usize].to_vec();
            p.sent.fetch_add(body.len() as u64, Ordering::SeqCst);
            (
                StatusCode::PARTIAL_CONTENT,
                [(header::CONTENT_RANGE, format!("bytes {a}-{b}/{len}"))],
                body,
            )
                .into_response()
        }
        _ => {
            p.sent.fetch_add(len, Ordering::SeqCst);
            p.bytes.to_vec().into_response()
        }
    }
}

async fn peer_head(State(p): State<Peer>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_LENGTH, p.bytes.len().to_string())],
    )
        .into_response()
}

async fn peer(bytes: Vec<u8>) -> (Client, Arc<AtomicU64>) {
    let p = Peer {
        bytes: Arc::new(bytes),
        sent: Arc::new(AtomicU64::new(0)),
    };
    let sent = p.sent.clone();
    let router = Router::new()
        .route("/v1/blobs/{hash}", get(peer_get).head(peer_head))
        .with_state(p);
    (Client::new(serve(router).await), sent)
}

fn fetcher(dir: &std::path::Path, chunk: u64) -> Fetcher {
    let store = Arc::new(BlobStore::open(dir.join("blobs"), 1 << 20).unwrap());
    Fetcher::new(store, dir.join("partial"), chunk).unwrap()
}

#[tokio::test]
async fn a_blob_put_under_a_wrong_hash_is_refused_and_not_stored() {
    let dir = temp("put");
    let store = Arc::new(BlobStore::open(dir.join("blobs"), 1 << 20).unwrap());
    let plane = dataplane::router(PlaneState {
        store: store.clone(),
        inbox: Arc::new(Mutex::new(Default::default())),
        address: Address([7; 32]),
        vivaldi: Arc::new(Mutex::new(VivaldiNode::default())),
        extra_rtt: Duration::ZERO,
        sessions: Arc::new(agentic_provider::session::Sessions::new(
            <commonware_cryptography::ed25519::PrivateKey as commonware_cryptography::Signer>::from_seed(7),
        )),
    });
    let c = Client::new(serve(plane).await);
    let (bytes, hash) = blob(1000);
    let (_, other) = blob(999);
    let err = c.put_blob_named(&other, bytes.clone()).await.unwrap_err();
    assert!(
        matches!(&err, ClientError::Api { status: 422, code, .. } if code == "hash_mismatch"),
        "{err}"
    );
    assert_eq!(store.size(&other).unwrap(), None);
    // Under its own name it is stored and served back, whole and by range.
    assert_eq!(c.put_blob(bytes.clone()).await.unwrap(), hash);
    assert_eq!(c.blob_size(&hash).await.unwrap(), Some(1000));
    assert_eq!(
        c.get_blob_range(&hash, 10, 20).await.unwrap(),
        &bytes[10..30]
    );
    // The ping answers the provider's address.
    let ping = c.ping().await.unwrap();
    assert_eq!(ping.address, Address([7; 32]));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_lying_peer_is_refused_and_the_next_source_is_used() {
    let dir = temp("liar");
    let (bytes, hash) = blob(5000);
    let mut forged = bytes.clone();
    forged[4321] ^= 1;
    let (liar, _) = peer(forged).await;
    let f = fetcher(&dir, 1024);
    // Only the liar: refused, nothing stored, no partial file left behind.
    let err = f
        .fetch(&hash, std::slice::from_ref(&liar), &|_, _| {})
        .await
        .unwrap_err();
    assert!(
        matches!(&err, FetchError::Failed { detail, .. } if detail.contains("refused")),
        "{err}"
    );
    assert_eq!(f.store().size(&hash).unwrap(), None);
    assert!(!dir
        .join("partial")
        .join(format!("{}.part", hash.to_hex()))
        .exists());
    // The liar first, then an honest peer: the honest bytes land.
    let (honest, _) = peer(bytes.clone()).await;
    f.fetch(&hash, &[liar, honest], &|_, _| {}).await.unwrap();
    assert_eq!(f.store().get(&hash).unwrap().unwrap(), bytes);
    // A blob nobody has is a clear error.
    let (_, missing) = blob(17);
    let empty = Client::new(serve(Router::new()).await);
    let err = f.fetch(&missing, &[empty], &|_, _| {}).await.unwrap_err();
    assert!(matches!(err, FetchError::NotFound(_)), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_download_resumes_from_its_partial_file() {
    let dir = temp("resume");
    let (bytes, hash) = blob(10_000);
    let f = fetcher(&dir, 1000);
    // An earlier run got 6,500 bytes before it died.
    let part = dir.join("partial").join(format!("{}.part", hash.to_hex()));
    std::fs::write(&part, &bytes[..6500]).unwrap();
    let (src, sent) = peer(bytes.clone()).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    f.fetch(&hash, &[src], &move |done, total| {
        s2.lock().unwrap().push((done, total))
    })
    .await
    .unwrap();
    assert_eq!(
        sent.load(Ordering::SeqCst),
        3500,
        "only the missing bytes moved"
    );
    assert_eq!(seen.lock().unwrap().first(), Some(&(7500, 10_000)));
    assert_eq!(f.store().get(&hash).unwrap().unwrap(), bytes);
    assert!(!part.exists());

    // A corrupt partial file makes the finished download hash wrong: it is thrown
    // away (refused), and the next attempt starts over and succeeds.
    let (bytes, hash) = blob(4000);
    let part = dir.join("partial").join(format!("{}.part", hash.to_hex()));
    std::fs::write(&part, vec![0u8; 1500]).unwrap();
    let (src, _) = peer(bytes.clone()).await;
    let err = f
        .fetch(&hash, std::slice::from_ref(&src), &|_, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(!part.exists());
    f.fetch(&hash, &[src], &|_, _| {}).await.unwrap();
    assert_eq!(f.store().get(&hash).unwrap().unwrap(), bytes);
    let _ = std::fs::remove_dir_all(&dir);
}
