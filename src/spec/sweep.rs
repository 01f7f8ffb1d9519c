//! Sweep files: one network, its training and simulation settings, network
//! profiles, and a design space of ReLU-sharing plans to explore.
//!
//! ```toml
//! name = "cifar"
//! architecture = "../architectures/cifar10.toml"   # relative to this file
//! dataset = "CIFAR-10"                              # named in the note when data is missing
//! protocol = "securenn"                             # a built-in table or a protocol file
//! seeds = 3                                         # trainings per point (seed, seed + 1, ..): mean, sd, n
//!
//! [train]                     # the keys of `explore train --config`
//! epochs = 15
//!
//! [simulate]
//! samples = 2                 # secure inferences per point
//!
//! [profile.lan3]              # extra network profiles beside lan and wan
//! bandwidth_mbps = 1000
//! rtt_ms = 1
//!
//! [[point]]                   # a named point: a plan file, and what the paper reports for it
//! plan = "../architectures/plans/cifar10/uniform-3x3.toml"
//! paper = { table = "5", accuracy = 82.65 }
//!
//! [search]                    # one point per budget: `explore search` from the trained
//! budgets = ["mb<=64.4"]      # original (needs [train] init), then fine-tuned like the rest
//! samples = 256               # training images that measure the distortion
//!
//! [[grid]]                    # a grid: every combination of the array-valued keys
//! name = "patch"
//! layers = ["relu1", "relu2"] # default: every ReLU layer; an array of arrays is an axis
//! per_layer = false           # true: each layer takes its own value on each axis
//! group = "patch"
//! patch = [1, 2, 3, 4, 8, 16, 32]
//! decision = "learned"
//! weights = "public"
//! ```
//! In a grid every array is an axis; a rectangular patch or window is an array inside
//! the axis (`patch = [[3, 2]]`). The other keys are those of a plan's `[relu.LAYER]`
//! table and are checked the same way.

use super::plan::PlanSpec;
use super::{from_table, parse_toml, read_text};
use crate::error::{Error, Result};
use crate::spec::profile::Profile;
use crate::spec::train::{Optimizer, TrainConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct SweepSpec {
    pub path: PathBuf,
    /// Names the output folder `output/<name>/`; the file's stem when not given.
    pub name: String,
    pub description: Option<String>,
    /// Resolved against the sweep file's folder.
    pub architecture: PathBuf,
    pub dataset: Option<String>,
    /// A built-in protocol name, or a protocol file resolved against the sweep's folder.
    pub protocol: String,
    pub profiles: BTreeMap<String, Profile>,
    pub train: TrainConfig,
    /// `[train] init = "original"` or a checkpoint: each point is fine-tuned from the
    /// trained original.
    pub warm: Option<Warm>,
    /// Images per split to train on (all when absent).
    pub train_images: Option<usize>,
    /// Trainings per point, with seeds `[train] seed`, `seed + 1`, ...: results report
    /// their mean, standard deviation and count.
    pub seeds: usize,
    pub simulate: SimulateSettings,
    pub points: Vec<NamedPoint>,
    pub grids: Vec<Grid>,
    /// Searched points, one per budget (`[search]`).
    pub search: Option<SearchSettings>,
    /// Published figures drawn beside the measured points (`frontier = "FILE.csv"`,
    /// resolved against the sweep's folder; the rows of `dataset` are drawn).
    pub frontier: Option<PathBuf>,
}

/// `[search]`: what `explore search` takes, for every budget of a sweep.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSettings {
    /// One searched point per entry, `UNIT<=LIMIT` (units as `explore search --budget`);
    /// several limits of one point joined by `&`.
    pub budgets: Vec<String>,
    #[serde(default = "SearchSettings::default_samples")]
    pub samples: usize,
    /// ReLU layers searched (default: every ReLU layer on a map).
    #[serde(default)]
    pub layers: Vec<String>,
    #[serde(default = "SearchSettings::default_sides")]
    pub sides: Vec<usize>,
    #[serde(default = "SearchSettings::default_edge")]
    pub edge: super::plan::Edge,
    /// learned-public (default), learned-secret, mean or center.
    #[serde(default = "SearchSettings::default_decision")]
    pub decision: String,
}

impl SearchSettings {
    fn default_samples() -> usize {
        256
    }
    fn default_sides() -> Vec<usize> {
        vec![1, 2, 3, 4, 8, 16, 32]
    }
    fn default_edge() -> super::plan::Edge {
        super::plan::Edge::Partial
    }
    fn default_decision() -> String {
        "learned-public".into()
    }

    /// The decision rule `decision` names.
    pub fn decision(&self) -> Option<super::plan::Decision> {
        use super::plan::{Decision, WeightVisibility};
        Some(match self.decision.as_str() {
            "learned-public" => Decision::Learned { weights: WeightVisibility::Public, shared_across_channels: false },
            "learned-secret" => Decision::Learned { weights: WeightVisibility::Secret, shared_across_channels: false },
            "mean" => Decision::Mean,
            "center" => Decision::Center,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulateSettings {
    /// Secure inferences per design point (0 skips the stage).
    pub samples: usize,
    pub frac_bits: u32,
}

impl Default for SimulateSettings {
    fn default() -> Self {
        SimulateSettings { samples: 2, frac_bits: 13 }
    }
}

/// What the paper reports for a named point, to print and plot beside ours.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Paper {
    /// Which table of the paper, e.g. "5" or "6 (Fashion-MNIST)".
    pub table: Option<String>,
    /// Plaintext test accuracy, percent.
    pub accuracy: Option<f64>,
    /// Table 8's secure-inference figures, where it has the row.
    pub megabytes: Option<f64>,
    pub rounds: Option<u64>,
    pub seconds: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct NamedPoint {
    pub name: String,
    pub plan: PlanSpec,
    pub paper: Option<Paper>,
    /// This point's fine-tuning epochs in a warm-started sweep, in place of
    /// `[train] finetune_epochs` (a point that needs longer to recover).
    pub finetune_epochs: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPoint {
    name: Option<String>,
    plan: PathBuf,
    paper: Option<Paper>,
    finetune_epochs: Option<usize>,
}

/// A warm-started sweep: every point starts from the original's weights
/// (`train --init`) and is fine-tuned for `finetune_epochs` epochs, at `finetune_lr`
/// (the `[train]` lr when absent) with `finetune_optimizer` (the `[train]` optimizer
/// when absent) under the `[train]` schedule, with augmentation as `finetune_augment`
/// says (as `[train]` when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Warm {
    pub parent: Parent,
    pub finetune_epochs: usize,
    pub finetune_lr: Option<f64>,
    pub finetune_augment: Option<bool>,
    pub finetune_optimizer: Option<Optimizer>,
}

/// Where a warm-started sweep's original comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// `init = "original"`: trained with `[train]` (or found in the store).
    Original,
    /// `init = "FILE.safetensors"`: a trained original checkpoint (resolved against the
    /// sweep's folder), evaluated once and used as is.
    Checkpoint(PathBuf),
}

impl SweepSpec {
    /// Fine-tuning epochs of the point named `point` in a warm-started sweep: its own
    /// `finetune_epochs`, else `[train] finetune_epochs`; `None` in a cold sweep.
    pub fn finetune_epochs(&self, point: &str) -> Option<usize> {
        let own = self.points.iter().find(|p| p.name == point).and_then(|p| p.finetune_epochs);
        self.warm.as_ref().map(|w| own.unwrap_or(w.finetune_epochs))
    }
}

impl Warm {
    /// Takes `init` and the `finetune_*` keys out of a `[train]` table (the rest are
    /// `explore train --config` keys).
    fn take(path: &Path, train: &mut toml::Table) -> Result<Option<Warm>> {
        let init = train.remove("init");
        let epochs = train.remove("finetune_epochs");
        let lr = train.remove("finetune_lr");
        let augment = train.remove("finetune_augment");
        let optimizer = train.remove("finetune_optimizer");
        let bad = |key: &str, m: String| Err(Error::invalid(path, Some(format!("[train] key \"{key}\"")), m));
        let given =
            [("finetune_epochs", &epochs), ("finetune_lr", &lr), ("finetune_augment", &augment), ("finetune_optimizer", &optimizer)];
        let parent = match init {
            None => match given.iter().find(|(_, v)| v.is_some()) {
                Some((key, _)) => return bad(key, "goes with init = \"original\" or init = \"CHECKPOINT.safetensors\"".into()),
                None => return Ok(None),
            },
            Some(toml::Value::String(s)) if s == "original" => Parent::Original,
            Some(toml::Value::String(s)) if s.ends_with(".safetensors") => {
                let file = path.parent().unwrap_or(Path::new(".")).join(&s);
                if !file.is_file() {
                    return bad("init", format!("no checkpoint at {}", file.display()));
                }
                Parent::Checkpoint(file)
            }
            Some(v) => return bad("init", format!("\"original\" or a .safetensors checkpoint of the original, got {v}")),
        };
        let finetune_epochs = match epochs {
            None => return bad("finetune_epochs", "missing: how many epochs each point is fine-tuned".into()),
            Some(toml::Value::Integer(n)) if n >= 1 => n as usize,
            Some(v) => return bad("finetune_epochs", format!("must be a whole number of at least 1, got {v}")),
        };
        let finetune_lr = match lr {
            None => None,
            Some(toml::Value::Float(x)) if x > 0.0 && x.is_finite() => Some(x),
            Some(v) => return bad("finetune_lr", format!("must be a positive number, got {v}")),
        };
        let finetune_augment = match augment {
            None => None,
            Some(toml::Value::Boolean(b)) => Some(b),
            Some(v) => return bad("finetune_augment", format!("must be true or false, got {v}")),
        };
        // The names are `Optimizer`'s own (those of `[train] optimizer`).
        let finetune_optimizer = match optimizer {
            None => None,
            Some(v) => match v.clone().try_into::<Optimizer>() {
                Ok(o) => Some(o),
                Err(_) => return bad("finetune_optimizer", format!("\"sgd\" or \"adam\", got {v}")),
            },
        };
        Ok(Some(Warm { parent, finetune_epochs, finetune_lr, finetune_augment, finetune_optimizer }))
    }
}

/// One axis of a grid: (label, layer it applies to or None for all, key, values).
type Axis = (String, Option<String>, String, Vec<toml::Value>);

/// One grid of the design space, kept as written until the network's ReLU layers
/// are known (`expand`).
#[derive(Debug, Clone)]
pub struct Grid {
    pub name: String,
    /// Each entry is one choice of shared layers; `None`: every ReLU layer.
    pub layers: Option<Vec<Vec<String>>>,
    pub per_layer: bool,
    /// Plan keys in file order (sorted); one value, or several (an axis).
    pub keys: Vec<(String, Vec<toml::Value>)>,
}

/// A point of a grid, before it is checked against the network.
#[derive(Debug, Clone)]
pub struct GridPoint {
    pub name: String,
    /// The axis values that name it, `key=value` joined by `/`.
    pub parameters: String,
    /// `Err`: the combination is not a valid plan (reported, skipped).
    pub plan: std::result::Result<PlanSpec, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSweep {
    name: Option<String>,
    description: Option<String>,
    architecture: PathBuf,
    dataset: Option<String>,
    protocol: Option<String>,
    #[serde(default)]
    profile: BTreeMap<String, Profile>,
    #[serde(default)]
    train: toml::Table,
    train_images: Option<usize>,
    seeds: Option<usize>,
    #[serde(default)]
    simulate: SimulateSettings,
    #[serde(default)]
    point: Vec<toml::Table>,
    #[serde(default)]
    grid: Vec<toml::Table>,
    search: Option<toml::Table>,
    frontier: Option<PathBuf>,
}

impl SweepSpec {
    pub fn load(path: &Path) -> Result<SweepSpec> {
        let text = read_text(path)?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<SweepSpec> {
        let raw: RawSweep = parse_toml(path, text)?;
        let folder = path.parent().unwrap_or(Path::new("."));
        let name = match raw.name {
            Some(n) if !n.trim().is_empty() => n,
            Some(_) => return Err(Error::invalid(path, Some("key \"name\"".into()), "must not be empty")),
            None => path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "sweep".into()),
        };
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(Error::invalid(path, Some("key \"name\"".into()), "names the output folder: no slashes, no leading dot"));
        }
        let mut train_table = raw.train;
        let warm = Warm::take(path, &mut train_table)?;
        let train: TrainConfig = from_table(path, "[train]", train_table)?;
        train.check(path)?;
        if train.distill.is_some() && warm.is_none() {
            return Err(Error::invalid(
                path,
                Some("[train] key \"distill\"".into()),
                "goes with init = \"original\" or init = \"CHECKPOINT.safetensors\" (the teacher is the original)",
            ));
        }
        let protocol = match raw.protocol {
            None => "securenn".to_string(),
            Some(p) if crate::spec::protocol::ProtocolTable::builtin(&p).is_some() => p,
            Some(p) => folder.join(p).to_string_lossy().into_owned(),
        };
        let mut points = Vec::new();
        for (i, table) in raw.point.into_iter().enumerate() {
            let label = format!("[[point]] #{}", i + 1);
            let rp: RawPoint = from_table(path, &label, table)?;
            let plan = PlanSpec::load(&folder.join(&rp.plan))?;
            let name = rp.name.unwrap_or_else(|| plan.name.clone());
            if points.iter().any(|p: &NamedPoint| p.name == name) {
                return Err(Error::invalid(path, Some(label), format!("a second point named \"{name}\"")));
            }
            match rp.finetune_epochs {
                Some(0) => return Err(Error::invalid(path, Some(format!("{label} key \"finetune_epochs\"")), "must be at least 1")),
                Some(_) if warm.is_none() => {
                    return Err(Error::invalid(
                        path,
                        Some(format!("{label} key \"finetune_epochs\"")),
                        "goes with [train] init = \"original\" or init = \"CHECKPOINT.safetensors\"",
                    ));
                }
                _ => {}
            }
            points.push(NamedPoint { name, plan, paper: rp.paper, finetune_epochs: rp.finetune_epochs });
        }
        let grids = raw.grid.into_iter().enumerate().map(|(i, t)| Grid::parse(path, i, t)).collect::<Result<Vec<_>>>()?;
        let seeds = match raw.seeds {
            None => 1,
            Some(0) => return Err(Error::invalid(path, Some("key \"seeds\"".into()), "must be at least 1")),
            Some(n) => n,
        };
        let search: Option<SearchSettings> = raw.search.map(|t| from_table(path, "[search]", t)).transpose()?;
        if let Some(s) = &search {
            let at = |key: &str| Some(format!("[search] key \"{key}\""));
            if s.budgets.is_empty() {
                return Err(Error::invalid(path, at("budgets"), "needs at least one budget, e.g. [\"mb<=60\"]"));
            }
            if warm.is_none() {
                return Err(Error::invalid(
                    path,
                    Some("[search]".into()),
                    "searches from the trained original: needs [train] init = \"original\" or a checkpoint",
                ));
            }
            if s.decision().is_none() {
                return Err(Error::invalid(path, at("decision"), "learned-public, learned-secret, mean or center"));
            }
            if s.samples == 0 || s.sides.is_empty() || s.sides.contains(&0) {
                let key = if s.samples == 0 { "samples" } else { "sides" };
                return Err(Error::invalid(path, at(key), "must be at least 1 (sides: a non-empty list of sides >= 1)"));
            }
        }
        if points.is_empty() && grids.is_empty() && search.is_none() {
            return Err(Error::invalid(path, None, "no design points: add [[point]], [[grid]] or [search] tables"));
        }
        Ok(SweepSpec {
            path: path.to_path_buf(),
            name,
            description: raw.description,
            architecture: folder.join(raw.architecture),
            dataset: raw.dataset,
            protocol,
            profiles: raw.profile,
            train,
            warm,
            train_images: raw.train_images,
            seeds,
            simulate: raw.simulate,
            points,
            grids,
            search,
            frontier: raw.frontier.map(|f| folder.join(f)),
        })
    }
}

impl Grid {
    fn parse(path: &Path, index: usize, mut table: toml::Table) -> Result<Grid> {
        let label = format!("[[grid]] #{}", index + 1);
        let at = |key: &str| Some(format!("{label}: key \"{key}\""));
        let name = match table.remove("name") {
            Some(toml::Value::String(s)) if !s.is_empty() => s,
            Some(_) => return Err(Error::syntax(path, at("name"), "must be a non-empty string")),
            None => return Err(Error::syntax(path, Some(label), "needs key \"name\" (it prefixes the names of its points)")),
        };
        let label = format!("[[grid]] \"{name}\"");
        let at = |key: &str| Some(format!("{label}: key \"{key}\""));
        let per_layer = match table.remove("per_layer") {
            None => false,
            Some(toml::Value::Boolean(b)) => b,
            Some(_) => return Err(Error::syntax(path, at("per_layer"), "must be true or false")),
        };
        let names = |v: &toml::Value| -> Option<Vec<String>> { v.as_array()?.iter().map(|s| s.as_str().map(str::to_string)).collect() };
        let layers = match table.remove("layers") {
            None => None,
            Some(v) => {
                let sets = if let Some(one) = names(&v) {
                    vec![one]
                } else {
                    v.as_array().and_then(|a| a.iter().map(names).collect::<Option<Vec<_>>>()).ok_or_else(|| {
                        Error::syntax(path, at("layers"), "must be an array of ReLU layer names, or an array of such arrays (an axis)")
                    })?
                };
                if sets.iter().any(Vec::is_empty) || sets.is_empty() {
                    return Err(Error::invalid(path, at("layers"), "an empty set of layers"));
                }
                if per_layer && sets.len() > 1 {
                    return Err(Error::invalid(path, at("layers"), "with per_layer = true, give one set of layers"));
                }
                Some(sets)
            }
        };
        let mut keys = Vec::new();
        for (key, value) in table {
            let values = match value {
                toml::Value::Array(a) if a.is_empty() => return Err(Error::invalid(path, at(&key), "an empty axis")),
                toml::Value::Array(a) => a,
                v => vec![v],
            };
            keys.push((key, values));
        }
        if !keys.iter().any(|(k, _)| k == "group") {
            return Err(Error::syntax(path, Some(label), "needs key \"group\" (as in a plan's [relu.LAYER] table)"));
        }
        Ok(Grid { name, layers, per_layer, keys })
    }

    fn layer_sets(&self, relu_layers: &[String]) -> Vec<Vec<String>> {
        self.layers.clone().unwrap_or_else(|| vec![relu_layers.to_vec()])
    }

    /// The axes: (label, layer it applies to or None for all, key, values).
    fn axes(&self, layer_sets: &[Vec<String>]) -> Vec<Axis> {
        let mut axes: Vec<Axis> = Vec::new();
        if layer_sets.len() > 1 {
            let values = layer_sets.iter().map(|s| toml::Value::Array(s.iter().cloned().map(toml::Value::String).collect())).collect();
            axes.push(("layers".into(), None, "layers".into(), values));
        }
        for (key, values) in &self.keys {
            if self.per_layer && values.len() > 1 {
                for layer in &layer_sets[0] {
                    axes.push((format!("{layer}.{key}"), Some(layer.clone()), key.clone(), values.clone()));
                }
            } else {
                axes.push((key.clone(), None, key.clone(), values.clone()));
            }
        }
        axes
    }

    /// How many points `expand` would make, without making them (saturating).
    pub fn point_count(&self, relu_layers: &[String]) -> u64 {
        self.axes(&self.layer_sets(relu_layers)).iter().fold(1u64, |n, a| n.saturating_mul(a.3.len() as u64))
    }

    /// Every combination of the grid's axes, over `relu_layers` when the grid names no
    /// layers. Points whose plan is not valid carry the reason.
    pub fn expand(&self, path: &Path, relu_layers: &[String]) -> Result<Vec<GridPoint>> {
        let layer_sets = self.layer_sets(relu_layers);
        let axes = self.axes(&layer_sets);
        let sizes: Vec<usize> = axes.iter().map(|a| a.3.len()).collect();
        let total: usize = sizes.iter().product();
        let mut out = Vec::with_capacity(total);
        let mut index = vec![0usize; axes.len()];
        for _ in 0..total {
            let mut chosen_layers = &layer_sets[0];
            let mut named = Vec::new();
            let mut relu = toml::Table::new();
            let value_of = |i: usize| &axes[i].3[index[i]];
            for (i, (label, _, key, values)) in axes.iter().enumerate() {
                if values.len() > 1 {
                    named.push(format!("{label}={}", show(value_of(i))));
                }
                if key == "layers" {
                    chosen_layers = &layer_sets[index[i]];
                }
            }
            for layer in chosen_layers {
                let mut entry = toml::Table::new();
                for (i, (_, only, key, _)) in axes.iter().enumerate() {
                    if key == "layers" || only.as_ref().is_some_and(|l| l != layer) {
                        continue;
                    }
                    entry.insert(key.clone(), value_of(i).clone());
                }
                relu.insert(layer.clone(), toml::Value::Table(entry));
            }
            let parameters = named.join("/");
            let name = if parameters.is_empty() { self.name.clone() } else { format!("{}/{parameters}", self.name) };
            let within = format!("[[grid]] \"{}\" point {name}: ", self.name);
            let plan = match PlanSpec::from_relu_table(path, &within, name.clone(), relu) {
                Ok(p) => Ok(p),
                // A typo'd key or a value of the wrong type is the file's fault: stop.
                Err(e @ Error::Syntax { .. }) => return Err(e),
                Err(e) => Err(e.to_string()),
            };
            out.push(GridPoint { name, parameters, plan });
            // Next combination, last axis fastest.
            for i in (0..axes.len()).rev() {
                index[i] += 1;
                if index[i] < sizes[i] {
                    break;
                }
                index[i] = 0;
            }
        }
        Ok(out)
    }
}

/// A grid value as it appears in a point's name: `3`, `3x2`, `learned`, `0.2`,
/// `relu1+relu2`.
fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(a) if a.iter().all(|x| x.is_integer()) => a.iter().map(show).collect::<Vec<_>>().join("x"),
        toml::Value::Array(a) => a.iter().map(show).collect::<Vec<_>>().join("+"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::plan::Grouping;

    fn parse(text: &str) -> Result<SweepSpec> {
        SweepSpec::parse(Path::new("sweeps/s.toml"), text)
    }

    const HEAD: &str = "architecture = \"a.toml\"\n";

    #[test]
    fn a_grid_is_the_product_of_its_array_keys() {
        let s = parse(&format!(
            "{HEAD}[[grid]]\nname = \"patch\"\ngroup = \"patch\"\npatch = [1, 3, [3, 2]]\ndecision = [\"center\", \"mean\"]\n"
        ))
        .unwrap();
        assert_eq!(s.name, "s");
        assert_eq!(s.architecture, Path::new("sweeps/a.toml"));
        let points = s.grids[0].expand(&s.path, &["relu1".into(), "relu2".into()]).unwrap();
        let names: Vec<_> = points.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "patch/decision=center/patch=1",
                "patch/decision=center/patch=3",
                "patch/decision=center/patch=3x2",
                "patch/decision=mean/patch=1",
                "patch/decision=mean/patch=3",
                "patch/decision=mean/patch=3x2"
            ]
        );
        let plan = points[2].plan.as_ref().unwrap();
        assert_eq!(plan.relu.len(), 2);
        assert!(matches!(plan.relu["relu2"].grouping, Grouping::Patch { size: (3, 2), .. }));
    }

    #[test]
    fn per_layer_axes_and_layer_sets() {
        let s = parse(&format!(
            "{HEAD}[[grid]]\nname = \"g\"\nlayers = [\"a\", \"b\"]\nper_layer = true\ngroup = \"patch\"\npatch = [2, 4]\n[[grid]]\nname = \"h\"\nlayers = [[\"a\"], [\"a\", \"b\"]]\ngroup = \"channel\"\n"
        ))
        .unwrap();
        let g = s.grids[0].expand(&s.path, &[]).unwrap();
        assert_eq!(g.len(), 4);
        assert_eq!(g[1].name, "g/a.patch=2/b.patch=4");
        let p = g[1].plan.as_ref().unwrap();
        assert!(matches!(p.relu["b"].grouping, Grouping::Patch { size: (4, 4), .. }));
        let h = s.grids[1].expand(&s.path, &[]).unwrap();
        assert_eq!(h.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["h/layers=a", "h/layers=a+b"]);
        assert_eq!(h[0].plan.as_ref().unwrap().relu.len(), 1);
    }

    #[test]
    fn invalid_combinations_are_kept_with_the_reason_and_typos_stop() {
        let s = parse(&format!("{HEAD}[[grid]]\nname = \"g\"\ngroup = [\"patch\", \"channel\"]\npatch = 2\n")).unwrap();
        let g = s.grids[0].expand(&s.path, &["r".into()]).unwrap();
        assert!(g[0].plan.is_ok());
        let reason = g[1].plan.as_ref().unwrap_err();
        assert!(reason.contains("point g/group=channel") && reason.contains("\"patch\" does not apply"), "{reason}");
        let s = parse(&format!("{HEAD}[[grid]]\nname = \"g\"\ngroup = \"patch\"\npach = 2\n")).unwrap();
        let e = s.grids[0].expand(&s.path, &["r".into()]).unwrap_err().to_string();
        assert!(e.starts_with("sweeps/s.toml: [[grid]] \"g\" point g: [relu.r]") && e.contains("pach"), "{e}");
    }

    #[test]
    fn errors_name_the_table_and_key() {
        let e = parse(HEAD).unwrap_err().to_string();
        assert!(e.contains("no design points"), "{e}");
        let e = parse(&format!("{HEAD}[[grid]]\ngroup = \"patch\"\n")).unwrap_err().to_string();
        assert!(e.contains("[[grid]] #1") && e.contains("\"name\""), "{e}");
        let e = parse(&format!("{HEAD}[train]\nepochz = 3\n[[grid]]\nname = \"g\"\ngroup = \"channel\"\n")).unwrap_err().to_string();
        assert!(e.contains("[train]") && e.contains("epochz"), "{e}");
        let e = parse(&format!("{HEAD}[[point]]\nplan = \"missing.toml\"\n")).unwrap_err().to_string();
        assert!(e.starts_with("sweeps/missing.toml: cannot read"), "{e}");
        let e = parse(&format!("{HEAD}[[grid]]\nname = \"g\"\ngroup = \"patch\"\npatch = []\n")).unwrap_err().to_string();
        assert!(e.contains("key \"patch\": an empty axis"), "{e}");
    }

    #[test]
    fn seeds_and_warm_starts_are_read_and_checked() {
        let grid = "[[grid]]\nname = \"g\"\ngroup = \"channel\"\n";
        let s = parse(&format!("{HEAD}{grid}")).unwrap();
        assert_eq!((s.seeds, s.warm), (1, None));
        let s = parse(&format!("{HEAD}seeds = 3\n[train]\ninit = \"original\"\nfinetune_epochs = 2\nfinetune_lr = 0.01\n{grid}")).unwrap();
        assert_eq!(s.seeds, 3);
        assert_eq!(
            s.warm,
            Some(Warm {
                parent: Parent::Original,
                finetune_epochs: 2,
                finetune_lr: Some(0.01),
                finetune_augment: None,
                finetune_optimizer: None
            })
        );
        let s =
            parse(&format!("{HEAD}[train]\ninit = \"original\"\nfinetune_epochs = 2\nfinetune_augment = false\naugment = true\n{grid}"))
                .unwrap();
        assert_eq!((s.warm.unwrap().finetune_augment, s.train.augment), (Some(false), true));
        let s = parse(&format!("{HEAD}[train]\ninit = \"original\"\nfinetune_epochs = 2\nfinetune_optimizer = \"adam\"\n{grid}")).unwrap();
        assert_eq!((s.warm.unwrap().finetune_optimizer, s.train.optimizer), (Some(Optimizer::Adam), Optimizer::Sgd));
        let s = parse(&format!(
            "{HEAD}[train]\ninit = \"original\"\nfinetune_epochs = 2\ndistill = {{ temperature = 4.0, weight = 0.9 }}\n{grid}"
        ))
        .unwrap();
        assert_eq!(s.train.distill, Some(crate::spec::train::Distill { temperature: 4.0, weight: 0.9 }));
        // A checkpoint parent resolves against the sweep's folder (this crate's root
        // for the test) and must exist.
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("s.toml");
        let text = format!("{HEAD}[train]\ninit = \"models/cifar10-original.safetensors\"\nfinetune_epochs = 1\n{grid}");
        let s = SweepSpec::parse(&here, &text).unwrap();
        assert_eq!(
            s.warm.unwrap().parent,
            Parent::Checkpoint(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cifar10-original.safetensors"))
        );
        let bad = [
            ("seeds = 0\n", "key \"seeds\": must be at least 1"),
            ("[train]\ninit = \"gone.safetensors\"\nfinetune_epochs = 1\n", "no checkpoint at sweeps/gone.safetensors"),
            ("[train]\ninit = \"best\"\nfinetune_epochs = 1\n", "[train] key \"init\""),
            ("[train]\ninit = \"original\"\nfinetune_epochs = 1\nfinetune_lr = -1.0\n", "finetune_lr\": must be a positive number"),
            ("[train]\nfinetune_lr = 0.1\n", "finetune_lr\": goes with init"),
            ("[train]\nfinetune_augment = false\n", "finetune_augment\": goes with init"),
            ("[train]\nfinetune_optimizer = \"adam\"\n", "finetune_optimizer\": goes with init"),
            (
                "[train]\ninit = \"original\"\nfinetune_epochs = 1\nfinetune_optimizer = \"lion\"\n",
                "finetune_optimizer\": \"sgd\" or \"adam\", got \"lion\"",
            ),
            ("[train]\ninit = \"original\"\nfinetune_epochs = 1\nfinetune_augment = \"no\"\n", "finetune_augment\": must be true or false"),
            ("[train]\ndistill = { temperature = 4.0, weight = 0.9 }\n", "key \"distill\": goes with init"),
            (
                "[train]\ninit = \"original\"\nfinetune_epochs = 1\ndistill = { temperature = 0.0, weight = 0.9 }\n",
                "temperature must be a positive number",
            ),
            (
                "[train]\ninit = \"original\"\nfinetune_epochs = 1\ndistill = { temperature = 4.0, weight = 1.5 }\n",
                "weight must be in [0, 1]",
            ),
        ];
        for (text, want) in bad {
            let e = parse(&format!("{HEAD}{text}{grid}")).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }
}
