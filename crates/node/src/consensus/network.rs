//! The p2p channels consensus uses, and how to get them from a network.
//!
//! | channel | carries |
//! | --- | --- |
//! | [`CHANNEL_VOTES`] | simplex votes |
//! | [`CHANNEL_CERTIFICATES`] | simplex certificates |
//! | [`CHANNEL_RESOLVER`] | simplex certificate fetches |
//! | [`CHANNEL_BLOCKS`] | proposed blocks (buffered broadcast) |
//! | [`CHANNEL_BACKFILL`] | marshal's block and finalization fetches |
//! | [`CHANNEL_TXS`] | gossiped transactions |

use commonware_p2p::{simulated, Channel, Receiver, Sender};
use commonware_runtime::{Clock, Quota};

use super::PublicKey;

/// Simplex votes.
pub const CHANNEL_VOTES: Channel = 0;
/// Simplex certificates.
pub const CHANNEL_CERTIFICATES: Channel = 1;
/// Simplex certificate fetches.
pub const CHANNEL_RESOLVER: Channel = 2;
/// Proposed blocks.
pub const CHANNEL_BLOCKS: Channel = 3;
/// Marshal backfill.
pub const CHANNEL_BACKFILL: Channel = 4;
/// Gossiped transactions.
pub const CHANNEL_TXS: Channel = 5;

/// One `(sender, receiver)` pair per channel.
pub struct Channels<S, R> {
    /// [`CHANNEL_VOTES`].
    pub votes: (S, R),
    /// [`CHANNEL_CERTIFICATES`].
    pub certificates: (S, R),
    /// [`CHANNEL_RESOLVER`].
    pub resolver: (S, R),
    /// [`CHANNEL_BLOCKS`].
    pub blocks: (S, R),
    /// [`CHANNEL_BACKFILL`].
    pub backfill: (S, R),
    /// [`CHANNEL_TXS`].
    pub txs: (S, R),
}

/// Why the network could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The simulated network refused a registration.
    #[error("simulated network: {0}")]
    Simulated(#[from] simulated::Error),
}

/// Registers every consensus channel for one peer of a simulated network (tests).
pub async fn register_simulated<E: Clock>(
    control: &simulated::Control<PublicKey, E>,
    quota: Quota,
) -> Result<Channels<simulated::Sender<PublicKey, E>, simulated::Receiver<PublicKey>>, NetworkError>
where
    simulated::Sender<PublicKey, E>: Sender<PublicKey = PublicKey>,
    simulated::Receiver<PublicKey>: Receiver<PublicKey = PublicKey>,
{
    Ok(Channels {
        votes: control.register(CHANNEL_VOTES, quota).await?,
        certificates: control.register(CHANNEL_CERTIFICATES, quota).await?,
        resolver: control.register(CHANNEL_RESOLVER, quota).await?,
        blocks: control.register(CHANNEL_BLOCKS, quota).await?,
        backfill: control.register(CHANNEL_BACKFILL, quota).await?,
        txs: control.register(CHANNEL_TXS, quota).await?,
    })
}
