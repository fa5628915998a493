//! Round seeds seen in consensus activity, for the proposer.
//!
//! A block carries the seed signature of its parent's round (see the module docs of
//! [`crate::consensus`]). The proposer learns it from the certificate that let it build on the
//! parent: simplex reports every notarization, certification and finalization it sees to this
//! reporter, which keeps the seeds of recent views.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use commonware_actor::Feedback;
use commonware_consensus::{types::View, Reporter, Viewable};

use super::{Activity, SeedSignature};

/// How many views of seeds are kept.
const RETAINED_VIEWS: usize = 4096;

/// Seeds by view, shared between the reporter (writer) and the application (reader).
#[derive(Clone, Default)]
pub struct Seeds {
    inner: Arc<Mutex<BTreeMap<View, SeedSignature>>>,
}

impl Seeds {
    /// The seed signature of `view`, if a certificate for it was seen.
    pub fn get(&self, view: View) -> Option<SeedSignature> {
        self.inner.lock().ok()?.get(&view).copied()
    }

    fn insert(&self, view: View, seed: SeedSignature) {
        let Ok(mut map) = self.inner.lock() else {
            return;
        };
        map.insert(view, seed);
        while map.len() > RETAINED_VIEWS {
            map.pop_first();
        }
    }
}

impl Reporter for Seeds {
    type Activity = Activity;

    fn report(&mut self, activity: Activity) -> Feedback {
        let (view, certificate) = match &activity {
            Activity::Notarization(n) | Activity::Certification(n) => (n.view(), &n.certificate),
            Activity::Finalization(f) => (f.view(), &f.certificate),
            _ => return Feedback::Ok,
        };
        if let Some(signature) = certificate.get() {
            self.insert(view, signature.seed_signature);
        }
        Feedback::Ok
    }
}
