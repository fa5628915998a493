//! [`prepare`]: a [`JobRequest`] in, a ledger-ready [`PreparedJob`] out, with no I/O
//! other than reading the model's files.
//!
//! ```text
//!   model name/dir ──Bundle::of──▶ bundle bytes ──blake3──▶ spec.model
//!                                   │ load
//!   texts | tensor bytes ──encode──▶ input Activation ──blake3(canonical bytes)──▶ spec.input
//!                                   │ meter (exact ops per layer, from shapes)
//!                                   ▼
//!   placement (Ledger | Named: balanced split; Auto: partitioner) ──▶ spec.stages, spec.placement
//!                                   │
//!                                   ▼
//!                        escrow = State::escrow_for(spec)
//! ```
//!
//! Before anything is uploaded or signed, the input is checked against the model
//! (kind of activation, token ids within the vocabulary, lengths within the
//! positions, feature width), so a job no provider could run is never posted.

use agentic_compute::activation::{ActivationKind, DecodeLimits};
use agentic_compute::bundle::Bundle;
use agentic_compute::registry::LoadedModel;
use agentic_compute::{Activation, ComputeError, Model};
use agentic_protocol::types::limits;
use agentic_protocol::{Amount, Hash};

use super::error::RequesterError;
use super::placement;
use super::request::{JobInput, JobRequest, OfferView, PlacementChoice};
use super::spec::{finish_spec, PreparedJob};
use super::training;

/// Prepares `req` (see the module docs). `offers` are the market's current offers:
/// automatic placement chooses among them and a named placement is checked
/// against those it lists; the ledger placement ignores them (pass `&[]`).
pub fn prepare(req: &JobRequest, offers: &[OfferView]) -> Result<PreparedJob, RequesterError> {
    check_request(req)?;
    let input = match &req.input {
        JobInput::Training(t) => return training::prepare_training(req, t, offers),
        JobInput::Generate(g) => return super::generate::prepare_generation(req, g),
        JobInput::Texts(texts) => Inference::Texts(texts),
        JobInput::Activation(bytes) => Inference::Activation(bytes),
    };
    let model_err = |reason| RequesterError::Model {
        model: req.model.clone(),
        reason,
    };
    let bundle = Bundle::of(&req.model).map_err(model_err)?;
    let loaded = bundle.load().map_err(model_err)?;
    let input = encode_input(req, input, &loaded)?;
    let input_err = |reason| RequesterError::Input {
        model: req.model.clone(),
        reason,
    };
    check_fits(&loaded.model, &input).map_err(input_err)?;
    let layer_ops = loaded
        .model
        .meter(&input.input_shape())
        .map_err(input_err)?;
    let layers = layer_ops.len();
    if req.stages > layers {
        return Err(RequesterError::MoreStagesThanLayers {
            stages: req.stages,
            layers,
            model: req.model.clone(),
        });
    }
    let input_bytes = input.canonical_bytes();
    let boundary_bytes = boundary_bytes(&loaded.model, &input, input_bytes.len() as u64);

    let (ranges, plan) = match &req.placement {
        PlacementChoice::Ledger => (
            placement::balanced_split(&layer_ops, req.stages).ok_or(RequesterError::ZeroStages)?,
            None,
        ),
        PlacementChoice::Auto => {
            let (r, p) = placement::auto(req, offers, &layer_ops, &boundary_bytes)?;
            (r, Some(p))
        }
        PlacementChoice::Named(names) => {
            let (r, p) = placement::named(req, offers, names, &layer_ops, &boundary_bytes)?;
            (r, Some(p))
        }
    };
    let (spec, escrow) = finish_spec(
        req,
        Hash(bundle.hash()),
        input.hash(),
        &ranges,
        &layer_ops,
        &plan,
        0,
    )?;
    let layer_names = (0..layers).map(|i| loaded.model.layer_name(i)).collect();
    Ok(PreparedJob {
        bundle: bundle.encode(),
        model_hash: spec.model,
        input_hash: spec.input,
        input: input_bytes,
        spec,
        escrow,
        layer_ops,
        layer_names,
        boundary_bytes,
        placement: plan,
        training: None,
    })
}

/// What the ledger would refuse anyway, refused before any work.
fn check_request(req: &JobRequest) -> Result<(), RequesterError> {
    if req.stages == 0 {
        return Err(RequesterError::ZeroStages);
    }
    if req.stages > limits::MAX_STAGES {
        return Err(RequesterError::TooManyStages {
            stages: req.stages,
            max: limits::MAX_STAGES,
        });
    }
    if req.replicas == 0 || req.replicas as usize > limits::MAX_REPLICAS {
        return Err(RequesterError::BadReplicas {
            replicas: req.replicas,
            max: limits::MAX_REPLICAS,
        });
    }
    if req.max_price == Amount::ZERO {
        return Err(RequesterError::ZeroMaxPrice);
    }
    if req.deadline == 0 {
        return Err(RequesterError::ZeroDeadline);
    }
    Ok(())
}

/// The input of an inference job (a training job's is a state: [`training`]).
enum Inference<'a> {
    Texts(&'a [String]),
    Activation(&'a [u8]),
}

fn encode_input(
    req: &JobRequest,
    input: Inference<'_>,
    loaded: &LoadedModel,
) -> Result<Activation, RequesterError> {
    let input_err = |reason| RequesterError::Input {
        model: req.model.clone(),
        reason,
    };
    match input {
        Inference::Texts(texts) => {
            if texts.is_empty() {
                return Err(RequesterError::EmptyInput("no text given".into()));
            }
            if let Some(i) = texts.iter().position(|t| t.is_empty()) {
                return Err(RequesterError::EmptyInput(format!("text {i} is empty")));
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            loaded.encode(&refs).map_err(input_err)
        }
        Inference::Activation(bytes) => {
            if bytes.is_empty() {
                return Err(RequesterError::EmptyInput("the tensor has no bytes".into()));
            }
            Activation::from_canonical_bytes(bytes, DecodeLimits::default()).map_err(input_err)
        }
    }
}

/// Whether `input` is what the model's first layer takes: token ids within the
/// vocabulary for a language model, feature rows for an MLP (metering checks
/// lengths and widths).
fn check_fits(model: &Model, input: &Activation) -> Result<(), ComputeError> {
    let (want, vocab) = match model {
        Model::Gpt(m) => (ActivationKind::Tokens, Some(m.config().vocab_size)),
        Model::Bert(m) => (ActivationKind::Tokens, Some(m.config().vocab_size)),
        Model::Mlp(_) => (ActivationKind::Features, None),
    };
    if input.kind() != want {
        return Err(ComputeError::BadActivation {
            layer: 0,
            detail: format!(
                "a {} model takes {}, the input holds {}",
                model.architecture(),
                want.name(),
                input.kind().name()
            ),
        });
    }
    if let Some(vocab) = vocab {
        if let Some(&id) = input.ids().iter().find(|&&id| id as usize >= vocab) {
            return Err(ComputeError::TokenOutOfRange { id, vocab });
        }
    }
    Ok(())
}

/// Canonical size of an activation with `seqs` sequence lengths, no token ids and
/// a `rows × width` f32 tensor (see `agentic_compute::activation`).
fn activation_bytes(seqs: usize, rows: usize, width: usize) -> u64 {
    let header = 6 + 1 + 8 + 8 * seqs as u64 + 8 + 16;
    header.saturating_add((rows as u64).saturating_mul(width as u64).saturating_mul(4))
}

/// Canonical bytes at every layer boundary: `input_bytes`, then each layer's output
/// (hidden states `rows × width`, then logits, pooled vectors or MLP features).
fn boundary_bytes(model: &Model, input: &Activation, input_bytes: u64) -> Vec<u64> {
    let rows = input.rows();
    let seqs = input.seq_lens().len();
    let mut out = vec![input_bytes];
    match model {
        Model::Gpt(m) => {
            let c = m.config();
            out.extend((1..model.layers()).map(|_| activation_bytes(seqs, rows, c.n_embd)));
            out.push(activation_bytes(seqs, rows, c.vocab_size));
        }
        Model::Bert(m) => {
            let c = m.config();
            out.extend((1..model.layers()).map(|_| activation_bytes(seqs, rows, c.hidden_size)));
            out.push(activation_bytes(seqs, seqs, c.hidden_size));
        }
        Model::Mlp(m) => {
            out.extend(m.layers.iter().map(|l| activation_bytes(0, rows, l.n_out)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary_sizes_are_the_canonical_sizes() {
        // Run tiny-gpt and compare every predicted size with the real activation's.
        let loaded = Bundle::of("tiny-gpt").unwrap().load().unwrap();
        let input = loaded.encode(&["hello", "market"]).unwrap();
        let predicted = boundary_bytes(&loaded.model, &input, input.canonical_bytes().len() as u64);
        let mut act = input;
        let mut real = vec![act.canonical_bytes().len() as u64];
        for i in 0..loaded.model.layers() {
            act = loaded.model.run_layer(i, &act).unwrap();
            real.push(act.canonical_bytes().len() as u64);
        }
        assert_eq!(predicted, real);
    }
}
