//! ReLU-sharing plans: per ReLU layer (by name), how its activations share decisions.
//! Layers a plan does not name keep regular ReLU.
//!
//! ```toml
//! name = "uniform-3x3"
//! [relu.relu1]
//! group = "patch"
//! patch = 3
//! edge = "partial"
//! decision = "learned"
//! weights = "public"
//! ```
//! Whether a plan fits a network (layer names, patch sizes against map sizes) is
//! checked by `sharing`, which sees both.

use super::{Pair, from_table, parse_toml, read_text};
use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct PlanSpec {
    /// The file the plan came from; `None` for the built-in original (no sharing).
    pub path: Option<PathBuf>,
    pub name: String,
    pub description: Option<String>,
    /// When set, the plan refuses any architecture with another name.
    pub architecture: Option<String>,
    /// ReLU layer name -> its sharing, sorted by name.
    pub relu: BTreeMap<String, ReluPlan>,
    /// What `explore search` recorded about a plan it wrote (budgets, predicted cost,
    /// distortion); read back as is, used by nothing but reports.
    pub search: Option<toml::Table>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReluPlan {
    pub grouping: Grouping,
    pub decision: Decision,
    pub noise: Noise,
}

/// How the activations of one ReLU layer are split into groups sharing a decision.
#[derive(Debug, Clone, PartialEq)]
pub enum Grouping {
    /// Regular ReLU: every activation decides for itself.
    None,
    /// Non-overlapping `h x w` tiles in each channel.
    Patch { size: (usize, usize), edge: Edge },
    /// One decision per channel (the paper's "32 x 32").
    Channel,
    /// `clusters` groups in each window of each channel, found from training data
    /// (`explore cluster` writes the assignment; without one, a stand-in partition
    /// with the same counts).
    Clusters { window: Window, clusters: usize, edge: Edge, assignment: Option<Assignment> },
    /// No ReLU at all.
    Identity,
    /// Regular ReLU on this fraction of the channels, identity on the rest
    /// (Shafran et al.'s partial activation layers).
    Partial { fraction: f64 },
    /// Square tiles whose side each channel chooses (`explore search` writes these):
    /// `sides[c]` for channel c, 1 for regular ReLU, the map's side for one decision
    /// per channel. A side longer than one of the map's sides spans that side whole.
    PerChannel { sides: std::sync::Arc<Vec<usize>>, edge: Edge },
}

/// What to do where a map's side is not a multiple of the tile side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Edge {
    /// Smaller tiles at the border: ceil(side / tile) tiles (the paper's 121 for 3x3 on 32x32).
    Partial,
    /// The remainder joins the last tile: floor(side / tile) tiles (the paper's 81 for 3x3 on 29x29).
    Merge,
}

impl Edge {
    /// Number of tiles of side `tile` along a side of `side` (tile <= side).
    pub fn tiles(self, side: usize, tile: usize) -> usize {
        match self {
            Edge::Partial => side.div_ceil(tile),
            Edge::Merge => (side / tile).max(1),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The whole map of a channel.
    Full,
    Size(usize, usize),
}

/// Which cluster each activation of a layer belongs to, numbered 0..k within its
/// window: a `[C, H, W]` u32 tensor, named after the layer, in a safetensors file.
#[derive(Clone)]
pub struct Assignment {
    pub file: PathBuf,
    pub shape: Vec<usize>,
    pub ids: std::sync::Arc<Vec<u32>>,
    /// SHA-256 of the ids (hex, 16 digits): identifies the assignment in keys and Debug.
    pub digest: String,
}

impl PartialEq for Assignment {
    fn eq(&self, other: &Self) -> bool {
        self.shape == other.shape && self.ids == other.ids
    }
}

impl std::fmt::Debug for Assignment {
    // The ids themselves would fill pages; their digest identifies them. Not the file's
    // path: Debug enters store keys, which must not depend on how a path is spelled
    // (relative or absolute, from which folder), or shards and merges would disagree.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Assignment({:?}, sha256 {})", self.shape, self.digest)
    }
}

impl Assignment {
    /// Writes cluster ids, one `[C, H, W]` U32 tensor per layer, to `file` with
    /// `metadata` (through a temporary name: a reader never sees part of it).
    pub fn write(file: &Path, layers: &[(String, Vec<usize>, Vec<u32>)], metadata: HashMap<String, String>) -> std::io::Result<()> {
        let bytes: Vec<Vec<u8>> = layers.iter().map(|(_, _, ids)| ids.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
        let views = layers
            .iter()
            .zip(&bytes)
            .map(|((name, shape, _), b)| {
                let view = safetensors::tensor::TensorView::new(safetensors::Dtype::U32, shape.clone(), b)
                    .map_err(|e| std::io::Error::other(format!("tensor \"{name}\": {e}")))?;
                Ok((name.clone(), view))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        let out = safetensors::serialize(views, Some(metadata)).map_err(std::io::Error::other)?;
        let mut tmp = file.as_os_str().to_owned();
        tmp.push(format!(".tmp{}", std::process::id()));
        std::fs::write(&tmp, out)?;
        std::fs::rename(&tmp, file)
    }

    /// Reads the tensor named `layer` from `file`.
    pub fn load(file: &Path, layer: &str) -> std::result::Result<Assignment, String> {
        use sha2::Digest;
        let bytes = std::fs::read(file).map_err(|e| format!("cannot read assignment {}: {e}", file.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| format!("{}: not a safetensors file: {e}", file.display()))?;
        let t = st
            .tensor(layer)
            .map_err(|_| format!("{} has no tensor \"{layer}\" (write it with explore cluster --layers {layer})", file.display()))?;
        if t.dtype() != safetensors::Dtype::U32 {
            return Err(format!("{}: tensor \"{layer}\" is {:?}, expected U32 cluster ids", file.display(), t.dtype()));
        }
        let ids: Vec<u32> = t.data().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        let mut h = sha2::Sha256::new();
        h.update(t.data());
        let digest = h.finalize()[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Assignment { file: file.to_path_buf(), shape: t.shape().to_vec(), ids: std::sync::Arc::new(ids), digest })
    }
}

/// How a group's one decision is computed from its activations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// The activation at the group's centre decides (a one-hot v).
    Center,
    /// The mean of the group decides (v = 1/|g|, public).
    Mean,
    /// A trained weight vector v per group decides (v^T s >= 0).
    Learned { weights: WeightVisibility, shared_across_channels: bool },
}

/// Whether learned decision weights are known to the computing parties (then the score
/// is local) or secret-shared like the rest of the model (then it costs a product).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightVisibility {
    Public,
    Secret,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Noise {
    /// Probability that an activation's decision is flipped.
    pub p: f64,
    /// Whether flips also happen at inference (not only in training).
    pub at_inference: bool,
    pub mask: NoiseMask,
}

impl Noise {
    pub const NONE: Noise = Noise { p: 0.0, at_inference: false, mask: NoiseMask::Secret };

    /// True when secure inference must apply flips.
    pub fn at_inference(&self) -> bool {
        self.p > 0.0 && self.at_inference
    }
}

/// Whether the flip bits at inference are public (local to apply) or secret-shared
/// (one multiplication per activation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseMask {
    Public,
    Secret,
}

/// One line per layer's sharing, for tables and CSV: `patch 3x3 (partial edge), learned
/// public`, `channel, center, noise 0.2 at inference (secret mask)`.
impl std::fmt::Display for ReluPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let edge = |e: &Edge| match e {
            Edge::Partial => "partial edge",
            Edge::Merge => "merged edge",
        };
        match &self.grouping {
            Grouping::None => return write!(f, "relu"),
            Grouping::Identity => return write!(f, "identity"),
            Grouping::Partial { fraction } => return write!(f, "partial {fraction}"),
            Grouping::Channel => write!(f, "channel")?,
            Grouping::Patch { size: (h, w), edge: e } => write!(f, "patch {h}x{w} ({})", edge(e))?,
            Grouping::Clusters { window: Window::Full, clusters, .. } => write!(f, "{clusters} clusters per channel")?,
            Grouping::PerChannel { sides, edge: e } => {
                // Channels per side, smallest side first: "per-channel 1x1: 10, 3x3: 50 (partial edge)".
                let mut counts = BTreeMap::new();
                sides.iter().for_each(|&s| *counts.entry(s).or_insert(0usize) += 1);
                let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{s}x{s}: {n}")).collect();
                write!(f, "per-channel {} ({})", parts.join(", "), edge(e))?
            }
            Grouping::Clusters { window: Window::Size(h, w), clusters, edge: e, .. } => {
                write!(f, "{clusters} clusters per {h}x{w} window ({})", edge(e))?
            }
        }
        match self.decision {
            Decision::Center => write!(f, ", center")?,
            Decision::Mean => write!(f, ", mean")?,
            Decision::Learned { weights, shared_across_channels } => {
                let w = if weights == WeightVisibility::Public { "public" } else { "secret" };
                write!(f, ", learned {w}{}", if shared_across_channels { " shared across channels" } else { "" })?
            }
        }
        if self.noise.p > 0.0 {
            write!(f, ", noise {}", self.noise.p)?;
            if self.noise.at_inference {
                let m = if self.noise.mask == NoiseMask::Public { "public" } else { "secret" };
                write!(f, " at inference ({m} mask)")?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    architecture: Option<String>,
    #[serde(default)]
    relu: toml::Table,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<toml::Table>,
}

impl ReluPlan {
    /// The `[relu.LAYER]` table of a plan file that reads back as this plan.
    pub fn to_table(&self) -> toml::Table {
        let mut t = toml::Table::new();
        let mut set = |k: &str, v: toml::Value| {
            t.insert(k.into(), v);
        };
        let edge = |e: &Edge| toml::Value::String(if *e == Edge::Partial { "partial" } else { "merge" }.into());
        let pair = |(h, w): (usize, usize)| toml::Value::Array(vec![(h as i64).into(), (w as i64).into()]);
        let group = match &self.grouping {
            Grouping::None => "none",
            Grouping::Identity => "identity",
            Grouping::Channel => "channel",
            Grouping::Partial { fraction } => {
                set("partial", (*fraction).into());
                "partial"
            }
            Grouping::Patch { size, edge: e } => {
                set("patch", pair(*size));
                set("edge", edge(e));
                "patch"
            }
            Grouping::PerChannel { sides, edge: e } => {
                set("patches", toml::Value::Array(sides.iter().map(|&s| (s as i64).into()).collect()));
                set("edge", edge(e));
                "per-channel"
            }
            Grouping::Clusters { window, clusters, edge: e, assignment } => {
                set("window", if let Window::Size(h, w) = window { pair((*h, *w)) } else { "full".into() });
                set("clusters", (*clusters as i64).into());
                set("edge", edge(e));
                if let Some(a) = assignment {
                    set("assignment", a.file.display().to_string().into());
                }
                "clusters"
            }
        };
        set("group", group.into());
        if !matches!(self.grouping, Grouping::None | Grouping::Identity | Grouping::Partial { .. }) {
            match self.decision {
                Decision::Center => set("decision", "center".into()),
                Decision::Mean => set("decision", "mean".into()),
                Decision::Learned { weights, shared_across_channels } => {
                    set("decision", "learned".into());
                    set("weights", if weights == WeightVisibility::Public { "public" } else { "secret" }.into());
                    set("shared_across_channels", shared_across_channels.into());
                }
            }
            if self.noise.p > 0.0 {
                set("noise", self.noise.p.into());
                set("noise_at_inference", self.noise.at_inference.into());
                set("noise_mask", if self.noise.mask == NoiseMask::Public { "public" } else { "secret" }.into());
            }
        }
        t
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum GroupKind {
    None,
    Patch,
    Channel,
    Clusters,
    Identity,
    Partial,
    #[serde(rename = "per-channel")]
    PerChannel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum DecisionKind {
    Center,
    Mean,
    Learned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
enum RawWindow {
    Size(Pair),
    Word(WindowWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WindowWord {
    Full,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelu {
    group: GroupKind,
    patch: Option<Pair>,
    patches: Option<Vec<usize>>,
    edge: Option<Edge>,
    window: Option<RawWindow>,
    clusters: Option<usize>,
    partial: Option<f64>,
    decision: Option<DecisionKind>,
    weights: Option<WeightVisibility>,
    shared_across_channels: Option<bool>,
    noise: Option<f64>,
    noise_at_inference: Option<bool>,
    noise_mask: Option<NoiseMask>,
    assignment: Option<PathBuf>,
}

impl PlanSpec {
    pub fn load(path: &Path) -> Result<PlanSpec> {
        let text = read_text(path)?;
        Self::parse(path, &text)
    }

    /// The plan that shares nothing: every ReLU layer keeps regular ReLU.
    pub fn original() -> PlanSpec {
        PlanSpec {
            path: None,
            name: "original".into(),
            description: Some("regular ReLU everywhere".into()),
            architecture: None,
            relu: BTreeMap::new(),
            search: None,
        }
    }

    /// The file to name in errors.
    pub fn file(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("(no plan)"))
    }

    pub fn parse(path: &Path, text: &str) -> Result<PlanSpec> {
        let raw: RawPlan = parse_toml(path, text)?;
        if raw.name.trim().is_empty() {
            return Err(Error::invalid(path, Some("key \"name\"".into()), "must not be empty"));
        }
        let relu = Self::relu_entries(path, "", raw.relu)?;
        Ok(PlanSpec {
            path: Some(path.to_path_buf()),
            name: raw.name,
            description: raw.description,
            architecture: raw.architecture,
            relu,
            search: raw.search,
        })
    }

    /// A plan made elsewhere than in a plan file (a sweep's grid point): `relu` holds
    /// the `[relu.LAYER]` tables, and errors name `path` and `within`.
    pub fn from_relu_table(path: &Path, within: &str, name: String, relu: toml::Table) -> Result<PlanSpec> {
        let relu = Self::relu_entries(path, within, relu)?;
        Ok(PlanSpec { path: Some(path.to_path_buf()), name, description: None, architecture: None, relu, search: None })
    }

    /// The plan as plan-file TOML (what `parse` reads back to an equal plan). Cluster
    /// assignments are written as their file's path, which `parse` resolves against
    /// the folder of the file the text is saved in.
    pub fn to_toml(&self) -> std::result::Result<String, toml::ser::Error> {
        let relu = self.relu.iter().map(|(layer, p)| (layer.clone(), toml::Value::Table(p.to_table()))).collect();
        let raw = RawPlan {
            name: self.name.clone(),
            description: self.description.clone(),
            architecture: self.architecture.clone(),
            relu,
            search: self.search.clone(),
        };
        toml::to_string(&raw)
    }

    fn relu_entries(path: &Path, within: &str, tables: toml::Table) -> Result<BTreeMap<String, ReluPlan>> {
        let mut relu = BTreeMap::new();
        for (layer, value) in tables {
            let label = format!("{within}[relu.{layer}]");
            let toml::Value::Table(table) = value else {
                return Err(Error::syntax(path, Some(label), "must be a table, e.g. [relu.relu1] with group = \"patch\""));
            };
            let raw_relu: RawRelu = from_table(path, &label, table)?;
            let folder = path.parent().unwrap_or(Path::new("."));
            let plan = build_relu(&raw_relu, folder, &layer).map_err(|m| Error::invalid(path, Some(label), m))?;
            relu.insert(layer, plan);
        }
        Ok(relu)
    }
}

fn build_relu(raw: &RawRelu, folder: &Path, layer: &str) -> std::result::Result<ReluPlan, String> {
    use GroupKind as G;
    let group_name = match raw.group {
        G::None => "none",
        G::Patch => "patch",
        G::Channel => "channel",
        G::Clusters => "clusters",
        G::Identity => "identity",
        G::Partial => "partial",
        G::PerChannel => "per-channel",
    };
    const DECIDE: [&str; 6] = ["decision", "weights", "shared_across_channels", "noise", "noise_at_inference", "noise_mask"];
    let mut allowed: Vec<&str> = match raw.group {
        G::None | G::Identity => vec![],
        G::Partial => vec!["partial"],
        G::Patch => vec!["patch", "edge"],
        G::PerChannel => vec!["patches", "edge"],
        G::Channel => vec![],
        G::Clusters => vec!["window", "clusters", "edge", "assignment"],
    };
    if matches!(raw.group, G::Patch | G::Channel | G::Clusters | G::PerChannel) {
        allowed.extend(DECIDE);
    }
    let present = [
        ("patch", raw.patch.is_some()),
        ("patches", raw.patches.is_some()),
        ("edge", raw.edge.is_some()),
        ("window", raw.window.is_some()),
        ("clusters", raw.clusters.is_some()),
        ("partial", raw.partial.is_some()),
        ("decision", raw.decision.is_some()),
        ("weights", raw.weights.is_some()),
        ("shared_across_channels", raw.shared_across_channels.is_some()),
        ("noise", raw.noise.is_some()),
        ("noise_at_inference", raw.noise_at_inference.is_some()),
        ("noise_mask", raw.noise_mask.is_some()),
        ("assignment", raw.assignment.is_some()),
    ];
    for (key, set) in present {
        if set && !allowed.contains(&key) {
            return Err(format!("key \"{key}\" does not apply to group \"{group_name}\""));
        }
    }
    let edge = raw.edge.unwrap_or(Edge::Partial);
    let grouping = match raw.group {
        G::None => Grouping::None,
        G::Identity => Grouping::Identity,
        G::Channel => Grouping::Channel,
        G::Patch => {
            let size = raw.patch.ok_or("group \"patch\" needs key \"patch\" (e.g. patch = 3 or [3, 3])")?.hw();
            if size.0 == 0 || size.1 == 0 {
                return Err(format!("key \"patch\" must be at least 1, got {size:?}"));
            }
            Grouping::Patch { size, edge }
        }
        G::PerChannel => {
            let sides = raw
                .patches
                .clone()
                .ok_or("group \"per-channel\" needs key \"patches\" (the tile side of each channel, e.g. [1, 3, 32])")?;
            if let Some(c) = sides.iter().position(|&s| s == 0) {
                return Err(format!("key \"patches\": channel {c} has side 0; sides start at 1 (regular ReLU)"));
            }
            Grouping::PerChannel { sides: std::sync::Arc::new(sides), edge }
        }
        G::Clusters => {
            let window = match raw.window.ok_or("group \"clusters\" needs key \"window\" (e.g. window = 8 or \"full\")")? {
                RawWindow::Word(WindowWord::Full) => Window::Full,
                RawWindow::Size(p) => {
                    let (h, w) = p.hw();
                    if h == 0 || w == 0 {
                        return Err(format!("key \"window\" must be at least 1, got {:?}", (h, w)));
                    }
                    Window::Size(h, w)
                }
            };
            let clusters = raw.clusters.ok_or("group \"clusters\" needs key \"clusters\" (clusters per window)")?;
            if clusters == 0 {
                return Err("key \"clusters\" must be at least 1".into());
            }
            let assignment = raw.assignment.as_ref().map(|f| Assignment::load(&folder.join(f), layer)).transpose()?;
            Grouping::Clusters { window, clusters, edge, assignment }
        }
        G::Partial => {
            let fraction = raw.partial.ok_or("group \"partial\" needs key \"partial\" (fraction of channels that keep ReLU)")?;
            if !(0.0..=1.0).contains(&fraction) {
                return Err(format!("key \"partial\" must be in [0, 1], got {fraction}"));
            }
            Grouping::Partial { fraction }
        }
    };
    let learned_only = [("weights", raw.weights.is_some()), ("shared_across_channels", raw.shared_across_channels.is_some())];
    let decision = match raw.decision.unwrap_or(DecisionKind::Center) {
        DecisionKind::Center => Decision::Center,
        DecisionKind::Mean => Decision::Mean,
        DecisionKind::Learned => Decision::Learned {
            weights: raw.weights.unwrap_or(WeightVisibility::Secret),
            shared_across_channels: raw.shared_across_channels.unwrap_or(false),
        },
    };
    if !matches!(decision, Decision::Learned { .. })
        && let Some((key, _)) = learned_only.iter().find(|(_, set)| *set)
    {
        return Err(format!("key \"{key}\" applies only to decision = \"learned\""));
    }
    let p = raw.noise.unwrap_or(0.0);
    if !(0.0..1.0).contains(&p) {
        return Err(format!("key \"noise\" must be in [0, 1), got {p}"));
    }
    let noise = Noise { p, at_inference: raw.noise_at_inference.unwrap_or(false), mask: raw.noise_mask.unwrap_or(NoiseMask::Secret) };
    Ok(ReluPlan { grouping, decision, noise })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PlanSpec> {
        PlanSpec::parse(Path::new("p.toml"), text)
    }

    #[test]
    fn reads_patch_and_channel_entries() {
        let p = parse("name = \"x\"\n[relu.relu1]\ngroup = \"patch\"\npatch = [3, 2]\nedge = \"merge\"\ndecision = \"learned\"\nweights = \"public\"\n[relu.relu2]\ngroup = \"channel\"\nnoise = 0.2\nnoise_at_inference = true\n").unwrap();
        assert_eq!(p.relu["relu1"].grouping, Grouping::Patch { size: (3, 2), edge: Edge::Merge });
        assert_eq!(p.relu["relu1"].decision, Decision::Learned { weights: WeightVisibility::Public, shared_across_channels: false });
        assert_eq!(p.relu["relu2"].grouping, Grouping::Channel);
        assert_eq!(p.relu["relu2"].decision, Decision::Center);
        assert!(p.relu["relu2"].noise.at_inference());
    }

    #[test]
    fn clusters_window_is_a_size_or_full() {
        let p = parse("name = \"x\"\n[relu.a]\ngroup = \"clusters\"\nwindow = \"full\"\nclusters = 256\n[relu.b]\ngroup = \"clusters\"\nwindow = 8\nclusters = 8\n").unwrap();
        assert_eq!(p.relu["a"].grouping, Grouping::Clusters { window: Window::Full, clusters: 256, edge: Edge::Partial, assignment: None });
        assert_eq!(
            p.relu["b"].grouping,
            Grouping::Clusters { window: Window::Size(8, 8), clusters: 8, edge: Edge::Partial, assignment: None }
        );
    }

    #[test]
    fn per_channel_sides_read_and_write_back() {
        let text = "name = \"s\"\narchitecture = \"net\"\n[relu.relu1]\ngroup = \"per-channel\"\npatches = [1, 3, 3, 32]\ndecision = \"learned\"\nweights = \"public\"\n[relu.relu2]\ngroup = \"patch\"\npatch = [3, 2]\nedge = \"merge\"\nnoise = 0.25\nnoise_at_inference = true\n[search]\nbudgets = [\"mb<=20\"]\n";
        let p = parse(text).unwrap();
        let Grouping::PerChannel { sides, edge } = &p.relu["relu1"].grouping else { panic!("{:?}", p.relu["relu1"]) };
        assert_eq!((sides.as_slice(), *edge), (&[1, 3, 3, 32][..], Edge::Partial));
        assert_eq!(p.relu["relu1"].to_string(), "per-channel 1x1: 1, 3x3: 2, 32x32: 1 (partial edge), learned public");
        assert_eq!(p.search.as_ref().unwrap()["budgets"][0].as_str(), Some("mb<=20"));
        // Written and read again: the same plan, search table included.
        let again = parse(&p.to_toml().unwrap()).unwrap();
        assert_eq!((again.name.as_str(), again.architecture.as_deref()), ("s", Some("net")));
        assert_eq!(again.relu, p.relu);
        assert_eq!(again.search, p.search);
        let e = parse("name = \"x\"\n[relu.r]\ngroup = \"per-channel\"\npatches = [1, 0]\n").unwrap_err().to_string();
        assert!(e.contains("channel 1 has side 0"), "{e}");
        let e = parse("name = \"x\"\n[relu.r]\ngroup = \"per-channel\"\n").unwrap_err().to_string();
        assert!(e.contains("needs key \"patches\""), "{e}");
    }

    #[test]
    fn edge_rules_match_the_papers_counts() {
        assert_eq!(Edge::Partial.tiles(32, 3), 11); // 121 per channel
        assert_eq!(Edge::Merge.tiles(29, 3), 9); // 81 per channel
        assert_eq!(Edge::Merge.tiles(28, 3), 9);
        assert_eq!(Edge::Partial.tiles(32, 4), 8); // 64 per channel
    }

    #[test]
    fn errors_name_the_entry_and_key() {
        let e = parse("name = \"x\"\n[relu.relu1]\ngroup = \"patch\"\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml: [relu.relu1]: group \"patch\" needs key \"patch\""), "{e}");
        let e = parse("name = \"x\"\n[relu.relu1]\ngroup = \"channel\"\npatch = 3\n").unwrap_err().to_string();
        assert_eq!(e, "p.toml: [relu.relu1]: key \"patch\" does not apply to group \"channel\"");
        let e = parse("name = \"x\"\n[relu.relu1]\ngroup = \"tiles\"\n").unwrap_err().to_string();
        assert!(e.starts_with("p.toml: [relu.relu1]: key \"group\": unknown variant `tiles`"), "{e}");
        let e = parse("name = \"x\"\n[relu.relu1]\ngroup = \"channel\"\nnoise = 1.0\n").unwrap_err().to_string();
        assert!(e.contains("key \"noise\" must be in [0, 1)"), "{e}");
        let e = parse("name = \"x\"\n[relu.relu1]\ngroup = \"channel\"\nweights = \"public\"\n").unwrap_err().to_string();
        assert!(e.contains("applies only to decision = \"learned\""), "{e}");
    }
}
