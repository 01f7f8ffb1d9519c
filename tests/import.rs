//! `explore import` on ONNX files exported from PyTorch (tests/fixtures/onnx, made by
//! make-fixtures.py there; no Python is needed to run these tests).

mod common;
use common::{explore, explore_json, scratch};
use explore::graph::Network;
use explore::graph::sharing::Planned;
use explore::spec::{ArchSpec, PlanSpec};
use std::path::Path;

const FIXTURES: &str = "tests/fixtures/onnx";

fn import(dir: &Path, model: &str, weights: bool) -> (String, String) {
    let arch = dir.join(format!("{model}.toml")).display().to_string();
    let ckpt = dir.join(format!("{model}.safetensors")).display().to_string();
    let onnx = format!("{FIXTURES}/{model}.onnx");
    let mut args = vec!["import", onnx.as_str(), "-o", arch.as_str()];
    if weights {
        args.extend(["--weights", ckpt.as_str()]);
    }
    let o = explore(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (arch, ckpt)
}

/// Total ReLUs, rounds and bytes, and each layer's bits in order.
fn priced(arch: &str) -> (serde_json::Value, serde_json::Value, serde_json::Value, Vec<u64>) {
    let v = explore_json(&["cost", arch, "--format", "json"]);
    let bits = v["layers"].as_array().unwrap().iter().map(|l| l["bits"].as_u64().unwrap()).filter(|&b| b > 0).collect();
    (v["total"]["relus"].clone(), v["total"]["rounds"].clone(), v["total"]["bytes"].clone(), bits)
}

/// Plaintext float inference with the converted weights on the fixture's input,
/// against the output PyTorch computed.
fn outputs_match(arch: &str, ckpt: &str, io: &str) {
    let io: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/{io}.json")).unwrap()).unwrap();
    let floats = |k: &str| io[k].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect::<Vec<f64>>();
    let (input, expected) = (floats("input"), floats("output"));
    let network = Network::build(&ArchSpec::load(Path::new(arch)).unwrap()).unwrap();
    let plan = PlanSpec::original();
    let planned = Planned::new(&network, &plan).unwrap();
    let (params, _) = explore::infer::checkpoint::load(Path::new(ckpt), &planned).unwrap();
    let x: Vec<f32> = input.iter().map(|&v| v as f32).collect();
    let out = explore::infer::run(&mut explore::infer::plain::Float, &planned, &params.folded(&network), &x, 0);
    let got = out.last().unwrap();
    assert_eq!(got.len(), expected.len());
    let scale = expected.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() <= 1e-4 * scale, "{arch}: {got:?} vs {expected:?}");
    }
}

#[test]
fn lenet_from_pytorch_prices_as_the_hand_written_one_and_computes_what_pytorch_did() {
    let dir = scratch("import-lenet");
    let (arch, ckpt) = import(&dir, "lenet", true);
    assert_eq!(priced(&arch), priced("architectures/lenet_mnist.toml"));
    outputs_match(&arch, &ckpt, "lenet");
    // The converted weights run securely too: every layer's counts as predicted.
    let s = explore_json(&["simulate", &arch, "--weights", &ckpt, "--samples", "2", "--format", "json"]);
    assert_eq!(s["total"]["measured"], s["total"]["predicted"]);
    assert!(s["weights"].as_str().unwrap().starts_with("checkpoint"), "{s}");
}

#[test]
fn resnet18_from_pytorch_prices_as_the_hand_written_one_and_computes_what_pytorch_did() {
    let dir = scratch("import-resnet18");
    // Full width, exported without weights: the architecture alone.
    let (arch, _) = import(&dir, "resnet18-structure", false);
    let (relus, rounds, bytes, _) = priced(&arch);
    assert_eq!((relus.as_u64(), rounds.as_u64()), (Some(557_056), Some(206)));
    let hand = priced("architectures/resnet18_cifar.toml");
    assert_eq!((relus, rounds, bytes), (hand.0, hand.1, hand.2));
    // An eighth of the width with weights (batchnorm folded into the convs by the
    // exporter, with non-trivial statistics): PyTorch's outputs.
    let (arch, ckpt) = import(&dir, "resnet18-w8", true);
    outputs_match(&arch, &ckpt, "resnet18-w8");
    // Weights asked of a file without them.
    let o = explore(&["import", &format!("{FIXTURES}/resnet18-structure.onnx"), "-o", &arch, "--weights", &ckpt]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("holds no weights"), "{err}");
}

#[test]
fn bad_onnx_files_give_one_line_naming_the_node_and_exit_2() {
    let dir = scratch("import-bad");
    let out = dir.join("x.toml").display().to_string();
    for (file, fragment) in [
        ("bad-truncated", "not an ONNX model (the protobuf does not decode"),
        ("bad-sigmoid", "node \"/Sigmoid\" (Sigmoid, inputs \"/conv/Conv_output_0\"): this operator is not supported"),
        ("bad-dynamic", "input \"input\": dimension 2 has no fixed size (a dynamic shape)"),
        ("bad-grouped", "node \"/0/Conv\" (Conv, inputs \"input\", \"0.weight\", \"0.bias\"): grouped convolution (group = 2)"),
    ] {
        let path = format!("{FIXTURES}/{file}.onnx");
        let o = explore(&["import", &path, "-o", &out]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{file}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{file}: {err}");
        assert!(err.starts_with(&format!("error: {path}: {fragment}")), "{file}: {err}");
        assert!(!Path::new(&out).exists(), "{file}: wrote a file");
    }
}
