//! A provider keeps its offer current: when a far-away peer joins, its measured
//! coordinate drifts and it publishes the new one on chain.

mod common;

use std::time::{Duration, Instant};

use agentic_protocol::coord::Coord;
use common::*;

#[test]
fn the_coordinate_on_chain_follows_the_measurements() {
    with_network("offer", 1, &["near", "far"], |net| async move {
        let c = net.client();
        let near = net
            .provider("near", 1_000, |cfg| {
                cfg.refresh = Duration::from_millis(300);
                cfg.refresh_drift_us = 1_000;
            })
            .await
            .unwrap();
        // Alone on the network: nothing to measure against, the origin is published.
        let published = |v: agentic_client::api::ProviderView| -> Coord { v.provider.offer.coord };
        let me = near.address();
        assert_eq!(published(c.provider(&me).await.unwrap()), Coord::ORIGIN);
        // A provider 40 ms away joins.
        let _far = net
            .provider("far", 1_000, |cfg| {
                cfg.extra_rtt = Duration::from_millis(40)
            })
            .await
            .unwrap();
        let start = Instant::now();
        while near.status().offer_updates == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no offer update: {:?}",
                near.status()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let on_chain = published(c.provider(&me).await.unwrap());
        assert_ne!(on_chain, Coord::ORIGIN);
        // What is on chain is a coordinate the daemon measured (it may have moved on
        // since by less than the drift threshold).
        let now = near.status().coord;
        assert!(
            now.planar_us(&on_chain) < 40_000,
            "on chain {on_chain:?}, measured {now:?}"
        );
    });
}
