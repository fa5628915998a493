//! What the ledger paid this provider, read from the node's event stream
//! (`/v1/events?from=`): `StagePaid`, `AuditAgreed`, `AuditPaid` and
//! `ProviderCompensated` naming it. The daemon records these amounts; it never
//! recomputes a bill from prices and ops (the ledger may pay less — an escrow runs
//! out — or nothing).
//!
//! [`follow`] runs beside the daemon's loop: it reads the stream from the journal's
//! last applied height on, and hands over each block's payments when that block's
//! `block` event (which follows all its ledger events) arrives. On a dropped stream it
//! reconnects from the next height, so nothing is skipped or read twice.

use std::time::Duration;

use agentic_client::api::Event as ApiEvent;
use agentic_client::Client;
use agentic_protocol::{Address, Event, Height};
use futures::StreamExt as _;
use tokio::sync::mpsc;

use crate::journal::Payment;

/// One block's payments to this provider (possibly none), in event order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockPayments {
    /// The block.
    pub height: Height,
    /// What it paid us.
    pub payments: Vec<Payment>,
}

/// The payment to `me` that `event` reports, if any.
pub fn payment_to(me: &Address, event: &Event) -> Option<Payment> {
    match *event {
        Event::StagePaid {
            job,
            stage,
            provider,
            amount,
        } if provider == *me => Some(Payment {
            job,
            stage: Some(stage),
            amount,
        }),
        Event::AuditAgreed {
            job,
            stage,
            auditor,
            fee,
        }
        | Event::AuditPaid {
            job,
            stage,
            auditor,
            fee,
        } if auditor == *me => Some(Payment {
            job,
            stage: Some(stage),
            amount: fee,
        }),
        Event::ProviderCompensated {
            job,
            provider,
            amount,
        } if provider == *me => Some(Payment {
            job,
            stage: None,
            amount,
        }),
        _ => None,
    }
}

/// Follows the node's events from block `from` on and sends each finalized block's
/// payments to `me` down `out`, in height order, until `out` closes.
pub async fn follow(client: Client, me: Address, from: Height, out: mpsc::Sender<BlockPayments>) {
    let mut next = from;
    let mut pending: Vec<Payment> = Vec::new();
    loop {
        let mut stream = match client.events_from(next).await {
            Ok(s) => Box::pin(s),
            Err(e) => {
                tracing::debug!(error = %e, "event stream: reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        pending.clear();
        while let Some(item) = stream.next().await {
            match item {
                Ok(ApiEvent::Ledger(l)) if l.height >= next => {
                    pending.extend(payment_to(&me, &l.event));
                }
                Ok(ApiEvent::Block(b)) if b.height >= next => {
                    let block = BlockPayments {
                        height: b.height,
                        payments: std::mem::take(&mut pending),
                    };
                    if out.send(block).await.is_err() {
                        return;
                    }
                    next = Height(b.height.0 + 1);
                }
                Ok(ApiEvent::Lagged { missed }) => {
                    // Events were dropped: read them again from storage.
                    tracing::debug!(missed, "event stream lagged: replaying");
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "event stream");
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::{Amount, JobId};

    #[test]
    fn only_payments_to_me_count() {
        let me = Address([1; 32]);
        let other = Address([2; 32]);
        let paid = |provider| Event::StagePaid {
            job: JobId(4),
            stage: 1,
            provider,
            amount: Amount(30),
        };
        assert_eq!(
            payment_to(&me, &paid(me)),
            Some(Payment {
                job: JobId(4),
                stage: Some(1),
                amount: Amount(30)
            })
        );
        assert_eq!(payment_to(&me, &paid(other)), None);
        let audit = Event::AuditPaid {
            job: JobId(4),
            stage: 0,
            auditor: me,
            fee: Amount(7),
        };
        assert_eq!(payment_to(&me, &audit).map(|p| p.amount), Some(Amount(7)));
        let comp = Event::ProviderCompensated {
            job: JobId(5),
            provider: me,
            amount: Amount(3),
        };
        assert_eq!(payment_to(&me, &comp).map(|p| p.stage), Some(None));
        let unrelated = Event::StageFinalized {
            job: JobId(4),
            stage: 1,
        };
        assert_eq!(payment_to(&me, &unrelated), None);
    }
}
