//! MLP: a model trained by `train::mlp` loads through the registry (safetensors +
//! config) and runs layer by layer with the training code's exact logits; metering
//! equals execution; re-execution reproduces every layer.

use agentic_compute::loader::{to_safetensors, RawTensor};
use agentic_compute::models::Nonlinearity;
use agentic_compute::train::{ClassBatch, MlpParams};
use agentic_compute::{reexecute_layer, registry, Activation, Model};

#[test]
fn trained_mlp_loads_and_matches_training_forward() {
    let sizes = [6, 16, 8, 3];
    let params = MlpParams::<f32>::init(&sizes, 99).unwrap();
    let tensors: Vec<(String, RawTensor)> = params
        .params
        .tensors
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                RawTensor {
                    shape: p.shape.clone(),
                    data: p.data.clone(),
                },
            )
        })
        .collect();
    let bytes = to_safetensors(tensors.iter().map(|(n, t)| (n.as_str(), t))).unwrap();
    let cfg = br#"{"model_type":"mlp","sizes":[6,16,8,3],"activation":"relu"}"#;
    let m = registry::load_bytes(cfg, &bytes, None).unwrap();
    let Model::Mlp(mlp) = &m.model else {
        panic!("an MLP")
    };
    assert_eq!(mlp.activation, Nonlinearity::Relu);
    assert_eq!(mlp.layers.len(), 3);

    let rows = 5;
    let x: Vec<f32> = (0..rows * 6)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
        .collect();
    let input = Activation::features(rows, 6, x.clone()).unwrap();
    let run = m.model.run(input.clone()).unwrap();
    let batch = ClassBatch {
        n: rows,
        inputs: x,
        labels: vec![0; rows],
    };
    let logits = params.logits(&batch).unwrap();
    assert_eq!(
        run.output.tensor().data(),
        logits.as_slice(),
        "same bits as training"
    );

    assert_eq!(run.ops, m.model.meter(&input.input_shape()).unwrap());
    let mut act = input;
    for i in 0..m.model.layers() {
        assert_eq!(
            reexecute_layer(&m.model, i, &act).unwrap(),
            run.trace.layer_hashes[i]
        );
        act = m.model.run_layer(i, &act).unwrap();
    }
    // Wrong input width is a typed error.
    let bad = Activation::features(1, 5, vec![0.0; 5]).unwrap();
    assert!(m.model.run(bad).is_err());
}
