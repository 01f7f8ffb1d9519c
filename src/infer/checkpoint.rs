//! Checkpoints in safetensors format (readable from PyTorch and numpy): one f32
//! tensor per parameter, named `<layer>.weight`, `<layer>.bias` and, for shared ReLU
//! layers with learned decisions, `<layer>.decision_weight`; metadata holds the
//! architecture and plan names, the input normalisation and the training state.

use crate::error::{Error, Result};
use crate::graph::sharing::Planned;
use crate::infer::model::{LayerParams, Params};
use crate::spec::Op;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// The shapes each parameter tensor of a layer has, PyTorch-style.
fn shapes(planned: &Planned, name: &str, p: &LayerParams) -> (Vec<usize>, Vec<usize>) {
    let net = planned.network;
    let node = net.find(name).expect("parameters belong to layers");
    match net.node(node).op.as_ref() {
        Some(Op::Conv { out_channels, kernel, .. }) => {
            let c = net.input_shape(node).chw().map_or(1, |s| s.0);
            (vec![*out_channels, c, kernel.0, kernel.1], vec![*out_channels])
        }
        Some(Op::Linear { out_features }) => (vec![*out_features, net.input_shape(node).numel()], vec![*out_features]),
        Some(Op::BatchNorm) => (vec![p.weight.len()], vec![p.bias.len()]),
        _ => (vec![p.weight.len()], vec![]),
    }
}

fn tensor_name(planned: &Planned, layer: &str, part: &str) -> String {
    let is_relu = planned.network.find(layer).is_some_and(|n| planned.network.node(n).op == Some(Op::Relu));
    if is_relu && part == "weight" { format!("{layer}.decision_weight") } else { format!("{layer}.{part}") }
}

pub fn save(path: &Path, planned: &Planned, params: &Params, metadata: HashMap<String, String>) -> Result<()> {
    let mut names: Vec<&String> = params.layers.keys().collect();
    names.sort();
    let mut bytes: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for name in names {
        let p = &params.layers[name];
        let (ws, bs) = shapes(planned, name, p);
        bytes.push((tensor_name(planned, name, "weight"), ws, p.weight.iter().flat_map(|v| v.to_le_bytes()).collect()));
        if !p.bias.is_empty() {
            bytes.push((tensor_name(planned, name, "bias"), bs, p.bias.iter().flat_map(|v| v.to_le_bytes()).collect()));
        }
        if !p.buffers.is_empty() {
            let c = p.buffers.len() / 2;
            for (part, values) in [("running_mean", &p.buffers[..c]), ("running_var", &p.buffers[c..])] {
                bytes.push((format!("{name}.{part}"), vec![c], values.iter().flat_map(|v| v.to_le_bytes()).collect()));
            }
        }
    }
    let mut info = metadata;
    info.insert("format".into(), "explore-checkpoint-1".into());
    info.insert("architecture".into(), planned.network.name.clone());
    info.insert("plan".into(), planned.plan.name.clone());
    // Shapes and lengths come from the same parameters, so the views are well formed.
    let views: Vec<(String, TensorView)> =
        bytes.iter().map(|(n, s, b)| (n.clone(), TensorView::new(Dtype::F32, s.clone(), b).expect("shape matches data"))).collect();
    let out = safetensors::serialize(views, Some(info)).map_err(|e| Error::invalid(path, None, format!("cannot serialise: {e}")))?;
    std::fs::write(path, out).map_err(|source| Error::Write { path: path.to_path_buf(), source })
}

/// The input normalisation a checkpoint was trained with (`input_mean`, `input_std`
/// in its metadata, JSON lists), when it has one for `channels` channels.
pub fn input_stats(meta: &HashMap<String, String>, channels: usize) -> Option<(Vec<f32>, Vec<f32>)> {
    let read = |key: &str| -> Option<Vec<f32>> { serde_json::from_str(meta.get(key)?).ok() };
    let (mean, std) = (read("input_mean")?, read("input_std")?);
    (mean.len() == channels && std.len() == channels).then_some((mean, std))
}

/// Loads a checkpoint for this planned network, checking names and shapes. Returns
/// the parameters and the metadata.
pub fn load(path: &Path, planned: &Planned) -> Result<(Params, HashMap<String, String>)> {
    load_as(path, planned, Use::Same)
}

/// Warm start: the weights of a checkpoint of the same architecture under any plan.
/// A plan changes only which ReLU decisions are shared, so every conv, linear and
/// batchnorm tensor transfers; learned decision weights start from their defaults
/// (the group mean) whatever the checkpoint holds.
pub fn load_init(path: &Path, planned: &Planned) -> Result<(Params, HashMap<String, String>)> {
    load_as(path, planned, Use::Init)
}

/// Whether a checkpoint must be of the same plan, or only of the same architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Same,
    Init,
}

fn load_as(path: &Path, planned: &Planned, how: Use) -> Result<(Params, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Read { path: path.to_path_buf(), source })?;
    let bad = |m: String| Error::invalid(path, None, m);
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    let info = meta.metadata().clone().unwrap_or_default();
    let checked: &[(&str, &String)] = match how {
        Use::Same => &[("architecture", &planned.network.name), ("plan", &planned.plan.name)],
        Use::Init => &[("architecture", &planned.network.name)],
    };
    for &(key, want) in checked {
        if let Some(got) = info.get(key)
            && got != want
        {
            return Err(bad(format!("checkpoint is for {key} \"{got}\", not \"{want}\"")));
        }
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
    // The expected tensors: those of freshly initialised parameters.
    let template = Params::random(planned, 0);
    let mut layers = HashMap::new();
    // In network order, so that the first tensor that differs is the one named.
    let names = planned.network.layers().map(|(_, l)| &l.name).filter(|n| template.layers.contains_key(*n));
    for name in names {
        let p = &template.layers[name];
        let is_relu = planned.network.find(name).is_some_and(|n| planned.network.node(n).op == Some(Op::Relu));
        if how == Use::Init && is_relu {
            layers.insert(name.clone(), p.clone());
            continue;
        }
        let (ws, bs) = shapes(planned, name, p);
        let read = |part: &str, shape: &[usize]| -> Result<Vec<f32>> {
            let tn = tensor_name(planned, name, part);
            let t = st.tensor(&tn).map_err(|_| bad(format!("missing tensor \"{tn}\"")))?;
            if t.dtype() != Dtype::F32 || t.shape() != shape {
                return Err(bad(format!("tensor \"{tn}\" is {:?} {:?}, expected F32 {shape:?}", t.dtype(), t.shape())));
            }
            Ok(t.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        let weight = read("weight", &ws)?;
        let bias = if p.bias.is_empty() { vec![] } else { read("bias", &bs)? };
        let buffers = if p.buffers.is_empty() {
            vec![]
        } else {
            let c = p.buffers.len() / 2;
            let mut b = read("running_mean", &[c])?;
            b.extend(read("running_var", &[c])?);
            b
        };
        layers.insert(name.clone(), LayerParams { weight, bias, buffers });
    }
    // A tensor this network does not have means another network (cifar10_bn.toml's
    // batchnorm under cifar10.toml, say): its weights would be read wrong, so refuse.
    // A warm start may leave out the decision weights of the checkpoint's own plan.
    let expected: std::collections::HashSet<String> = template
        .layers
        .iter()
        .flat_map(|(name, p)| {
            let mut names = vec![tensor_name(planned, name, "weight")];
            if !p.bias.is_empty() {
                names.push(tensor_name(planned, name, "bias"));
            }
            if !p.buffers.is_empty() {
                names.extend([format!("{name}.running_mean"), format!("{name}.running_var")]);
            }
            names
        })
        .collect();
    let mut extra: Vec<String> = st
        .names()
        .into_iter()
        // Init may leave out the plan's decision weights: they start from defaults.
        .filter(|n| !(expected.contains(*n) || how == Use::Init && n.ends_with(".decision_weight")))
        .map(String::from)
        .collect();
    extra.sort();
    if let Some(first) = extra.first() {
        return Err(bad(format!(
            "tensor \"{first}\" is not a parameter of this network ({} such tensors): a checkpoint of another network?",
            extra.len()
        )));
    }
    Ok((Params { layers }, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Network;
    use crate::spec::{ArchSpec, PlanSpec};

    fn network(file: &str) -> Network {
        Network::build(&ArchSpec::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("architectures").join(file)).unwrap()).unwrap()
    }

    #[test]
    fn a_checkpoint_of_a_network_with_other_tensors_is_refused() {
        // Same architecture name, batchnorm added: the conv tensors alone would load.
        let (bn, plain) = (network("cifar10_bn.toml"), network("cifar10.toml"));
        let original = PlanSpec::original();
        let bn_planned = Planned::new(&bn, &original).unwrap();
        let path = std::env::temp_dir().join(format!("explore-ckpt-{}.safetensors", std::process::id()));
        save(&path, &bn_planned, &Params::random(&bn_planned, 1), HashMap::new()).unwrap();
        let plain_planned = Planned::new(&plain, &original).unwrap();
        for e in [load(&path, &plain_planned).unwrap_err(), load_init(&path, &plain_planned).unwrap_err()] {
            assert!(e.to_string().contains("tensor \"bn1.bias\" is not a parameter of this network"), "{e}");
        }
        assert!(load(&path, &bn_planned).is_ok());
        std::fs::remove_file(&path).unwrap();
    }
}
