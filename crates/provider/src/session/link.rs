//! A session link: one persistent TCP connection from a stage's provider to the next
//! one (or from the last stage back to stage 0), opened as an HTTP upgrade on the
//! receiver's data plane and authenticated both ways before any frame flows.
//!
//! ```text
//!  dialer D (sends frames)                         listener L (receives frames)
//!    GET /v1/sessions/{job}/link  Upgrade: agentic-session/1  x-agentic-nonce: n_D
//!                              ◀── 101 Switching Protocols
//!                              ◀── L's key (32) ‖ n_L (32) ‖ sig_L("accept" ‖ job ‖ n_D ‖ n_L)
//!    from (4) ‖ to (4) ‖ epoch (32) ‖ D's key (32) ‖ sig_D("dial" ‖ job ‖ from ‖ to ‖ epoch ‖ n_L ‖ L) ──▶
//!    frames ──▶
//! ```
//!
//! `epoch` names the session's current line-up (`run::epoch_of`: the hash of every
//! stage's provider): after a stage is replaced every link is opened again under the
//! new epoch, so no frame of an old line-up reaches the new one.
//!
//! Each side signs the other's fresh nonce with its provider key, so neither a replayed
//! handshake nor a stranger passes; the session then checks the keys against the
//! job's assignments on chain (the dialer must hold stage `from`, the listener stage
//! `to`). TCP keeps the frames in order. The bytes are not encrypted: activations are
//! no secret from the stages that compute them (a session over an untrusted network
//! would add a cipher here).

use agentic_protocol::{Address, JobId};
use commonware_codec::{DecodeExt as _, Encode as _};
use commonware_cryptography::ed25519::{PrivateKey, PublicKey, Signature};
use commonware_cryptography::{Signer as _, Verifier as _};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// The upgrade token.
pub const PROTOCOL: &str = "agentic-session/1";
/// The header carrying the dialer's nonce (64 hex digits).
pub const NONCE_HEADER: &str = "x-agentic-nonce";
const ACCEPT_NS: &[u8] = b"agentic-session-accept-v1";
const DIAL_NS: &[u8] = b"agentic-session-dial-v1";

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Connecting or talking failed.
    #[error("link to {endpoint}: {source}")]
    Io {
        /// The peer.
        endpoint: String,
        /// Why.
        source: std::io::Error,
    },
    /// The peer did not switch protocols.
    #[error("{endpoint} refused the session link: {status}")]
    Refused {
        /// The peer.
        endpoint: String,
        /// Its status line.
        status: String,
    },
    /// A key or signature that does not check out.
    #[error("session handshake: {0}")]
    Handshake(&'static str),
}

/// A fresh nonce: unique per process and call (freshness, not secrecy, is what the
/// handshake needs from it).
pub fn nonce(key: &PrivateKey) -> [u8; 32] {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut h = blake3::Hasher::new_derive_key("agentic session nonce v1");
    h.update(key.public_key().as_ref());
    h.update(&t.to_be_bytes());
    h.update(&n.to_be_bytes());
    h.update(&std::process::id().to_be_bytes());
    *h.finalize().as_bytes()
}

fn accept_msg(job: JobId, dialer_nonce: &[u8; 32], listener_nonce: &[u8; 32]) -> Vec<u8> {
    let mut m = job.0.to_be_bytes().to_vec();
    m.extend_from_slice(dialer_nonce);
    m.extend_from_slice(listener_nonce);
    m
}

fn dial_msg(
    job: JobId,
    from: u32,
    to: u32,
    epoch: &[u8; 32],
    listener_nonce: &[u8; 32],
    listener: &Address,
) -> Vec<u8> {
    let mut m = job.0.to_be_bytes().to_vec();
    m.extend_from_slice(&from.to_be_bytes());
    m.extend_from_slice(&to.to_be_bytes());
    m.extend_from_slice(epoch);
    m.extend_from_slice(listener_nonce);
    m.extend_from_slice(&listener.0);
    m
}

fn public_key(bytes: &[u8]) -> Result<PublicKey, LinkError> {
    PublicKey::decode(bytes.to_vec()).map_err(|_| LinkError::Handshake("not an ed25519 public key"))
}

fn signature(bytes: &[u8]) -> Result<Signature, LinkError> {
    Signature::decode(bytes.to_vec()).map_err(|_| LinkError::Handshake("malformed signature"))
}

/// A link's identity once the handshake passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The job.
    pub job: JobId,
    /// The dialer's stage.
    pub from: u32,
    /// The listener's stage.
    pub to: u32,
    /// The session's line-up the link belongs to.
    pub epoch: [u8; 32],
    /// The dialer.
    pub dialer: Address,
}

/// Dials `endpoint` for `job` as the provider of stage `from` sending to stage `to`,
/// whose provider must be `listener`, in the line-up `epoch`. Returns the stream to
/// write frames to.
pub async fn dial(
    endpoint: &str,
    key: &PrivateKey,
    job: JobId,
    (from, to): (u32, u32),
    epoch: [u8; 32],
    listener: Address,
) -> Result<TcpStream, LinkError> {
    let io = |source| LinkError::Io {
        endpoint: endpoint.to_string(),
        source,
    };
    let mut s = TcpStream::connect(endpoint).await.map_err(io)?;
    s.set_nodelay(true).map_err(io)?;
    let n_d = nonce(key);
    let req = format!(
        "GET /v1/sessions/{}/link HTTP/1.1\r\nHost: {endpoint}\r\nConnection: Upgrade\r\nUpgrade: {PROTOCOL}\r\n{NONCE_HEADER}: {}\r\n\r\n",
        job.0,
        hex(&n_d)
    );
    s.write_all(req.as_bytes()).await.map_err(io)?;
    // The response head, byte by byte up to the blank line (it is short and read once).
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 4096 {
            return Err(LinkError::Handshake("response head too long"));
        }
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.map_err(io)?;
        head.push(b[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let status = text.lines().next().unwrap_or_default().to_string();
    if !status.contains(" 101 ") {
        return Err(LinkError::Refused {
            endpoint: endpoint.to_string(),
            status,
        });
    }
    let mut acc = [0u8; 32 + 32 + 64];
    s.read_exact(&mut acc).await.map_err(io)?;
    let l_key = public_key(&acc[..32])?;
    if Address::from(&l_key) != listener {
        return Err(LinkError::Handshake(
            "the listener is not the stage's provider",
        ));
    }
    let n_l: [u8; 32] = acc[32..64].try_into().unwrap_or_default();
    let sig_l = signature(&acc[64..])?;
    if !l_key.verify(ACCEPT_NS, &accept_msg(job, &n_d, &n_l), &sig_l) {
        return Err(LinkError::Handshake("the listener's signature is wrong"));
    }
    let sig_d = key.sign(DIAL_NS, &dial_msg(job, from, to, &epoch, &n_l, &listener));
    let mut hello = Vec::with_capacity(8 + 32 + 32 + 64);
    hello.extend_from_slice(&from.to_be_bytes());
    hello.extend_from_slice(&to.to_be_bytes());
    hello.extend_from_slice(&epoch);
    hello.extend_from_slice(key.public_key().as_ref());
    hello.extend_from_slice(&sig_d.encode());
    s.write_all(&hello).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    Ok(s)
}

/// The listener's half of the handshake on an upgraded connection; returns who dialed
/// (checked against the chain by the session that takes the link).
pub async fn accept<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    key: &PrivateKey,
    job: JobId,
    dialer_nonce: [u8; 32],
) -> Result<Hello, LinkError> {
    let io = |source| LinkError::Io {
        endpoint: "dialer".into(),
        source,
    };
    let n_l = nonce(key);
    let me = key.public_key();
    let sig = key.sign(ACCEPT_NS, &accept_msg(job, &dialer_nonce, &n_l));
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(me.as_ref());
    out.extend_from_slice(&n_l);
    out.extend_from_slice(&sig.encode());
    s.write_all(&out).await.map_err(io)?;
    s.flush().await.map_err(io)?;
    let mut hello = [0u8; 8 + 32 + 32 + 64];
    s.read_exact(&mut hello).await.map_err(io)?;
    let from = u32::from_be_bytes([hello[0], hello[1], hello[2], hello[3]]);
    let to = u32::from_be_bytes([hello[4], hello[5], hello[6], hello[7]]);
    let epoch: [u8; 32] = hello[8..40].try_into().unwrap_or_default();
    let d_key = public_key(&hello[40..72])?;
    let sig_d = signature(&hello[72..])?;
    let me = Address::from(&me);
    if !d_key.verify(DIAL_NS, &dial_msg(job, from, to, &epoch, &n_l, &me), &sig_d) {
        return Err(LinkError::Handshake("the dialer's signature is wrong"));
    }
    Ok(Hello {
        job,
        from,
        to,
        epoch,
        dialer: Address::from(&d_key),
    })
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// 32 bytes from 64 hex digits.
pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}
