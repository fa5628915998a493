//! Registration and the offer: bonding up to the configured stake, registering (or
//! updating) the offer at start, keeping its coordinate current while running, and the
//! one way every transaction of the daemon is sent.
//!
//! ```text
//!  start:  bonded < stake? ─▶ Bond ─▶ offer on chain differs? ─▶ UpdateProvider
//!          (no provider, or retired)  ─▶ RegisterProvider { offer, stake }
//!  every `refresh`:  one Vivaldi round ─▶ drifted ≥ refresh_drift_us? ─▶ UpdateProvider
//! ```
//!
//! The start-up transactions are sent one by one, each waiting for its receipt
//! ([`send_tx`]); once the loop runs, every transaction goes through its executor's
//! pipelined sender ([`super::exec::Sender`]), which owns the nonce sequence.

use std::time::{Duration, Instant};

use agentic_client::api::TxReceipt;
use agentic_client::{Client, ClientError};
use agentic_protocol::tx::Offer;
use agentic_protocol::{Address, TxBody};

use super::plan::{Landed, TxKey};
use super::{Config, Daemon, ProviderError};
use crate::measure;

/// Clients for every other registered provider's data plane.
pub(super) async fn peer_clients(client: &Client, me: &Address) -> Vec<Client> {
    let Ok(offers) = client.offers().await else {
        return Vec::new();
    };
    offers
        .offers
        .iter()
        .filter(|o| o.provider != *me && !o.offer.endpoint.0.is_empty())
        .map(|o| Client::new(o.offer.endpoint.0.clone()))
        .collect()
}

/// Bonds up to the configured stake and registers (or updates) the offer.
pub(super) async fn register(
    client: &Client,
    config: &Config,
    me: &Address,
    offer: Offer,
) -> Result<(), ProviderError> {
    let bonded = client.account(me).await?.account.bonded;
    let more = config.stake.saturating_sub(bonded);
    let existing = match client.provider(me).await {
        Ok(v) => Some(v.provider),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    match existing {
        Some(current) if !current.retired => {
            if more.0 > 0 {
                send_tx(client, config, TxBody::Bond { amount: more }).await?;
            }
            if current.offer != offer {
                send_tx(client, config, TxBody::UpdateProvider { offer }).await?;
            }
        }
        _ => {
            send_tx(
                client,
                config,
                TxBody::RegisterProvider { offer, stake: more },
            )
            .await?;
        }
    }
    Ok(())
}

/// Sends a transaction signed with the provider's key and waits for its receipt. A
/// transaction of ours still pending from before a restart holds the next nonce until
/// it lands: wait for it (up to `tx_timeout`) instead of failing.
async fn send_tx(client: &Client, config: &Config, body: TxBody) -> Result<TxReceipt, ClientError> {
    let start = Instant::now();
    loop {
        match client
            .send(&config.key, body.clone(), config.tx_timeout)
            .await
        {
            Err(ClientError::Api { code, .. })
                if code == "nonce_taken" && start.elapsed() < config.tx_timeout =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            r => return r,
        }
    }
}

impl Daemon {
    /// Keeps the offer current: one more Vivaldi round against the providers now on
    /// the chain, and an `UpdateProvider` once the coordinate has drifted more than
    /// `refresh_drift_us` from the published one. Runs in the loop (not beside it)
    /// because the daemon's transactions share one nonce sequence ([`super::exec`]).
    pub(super) async fn refresh_offer(&mut self) -> Result<(), ProviderError> {
        let peers = peer_clients(&self.client, &self.me.address).await;
        if peers.is_empty() {
            return Ok(());
        }
        measure::settle(&self.vivaldi, &peers, 1, self.config.extra_rtt).await;
        let coord = self.vivaldi.lock().unwrap_or_else(|e| e.into_inner()).coord;
        self.status().coord = coord;
        let drift = coord
            .planar_us(&self.offer.coord)
            .saturating_add(coord.height.abs_diff(self.offer.coord.height).into());
        if drift < self.config.refresh_drift_us {
            return Ok(());
        }
        let offer = Offer {
            coord,
            ..self.offer.clone()
        };
        self.sender
            .send(
                TxKey::Offer,
                TxBody::UpdateProvider {
                    offer: offer.clone(),
                },
                Landed::OfferUpdated,
            )
            .await?;
        tracing::info!(
            drift_us = drift,
            ?coord,
            "offer update sent: the coordinate moved"
        );
        self.offer = offer;
        Ok(())
    }
}
