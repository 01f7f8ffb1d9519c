//! `explore`: what ReLU sharing saves in secure inference, and what it costs.
//!
//! The modules form layers; each imports only from the layers before it (checked by
//! `tests/layers.rs`, which reads every `crate::` path):
//!
//! | layer | modules | what it holds |
//! |---|---|---|
//! | 0 | `error`, `allocator` | the one error type (file, key, message); mimalloc's settings |
//! | 1 | `spec` | file formats and their checks: architectures, plans, sweeps, protocol tables, profiles, training settings, the published frontier (`spec::frontier`); ONNX models read into layers (`spec::onnx`) |
//! | 2 | `graph` | the layer graph with inferred shapes; `graph::sharing`, a plan applied to it (groups of shared decisions) |
//! | 3 | `cost` | action counts per layer (`cost::actions`) priced by a protocol table; `cost::compare` across tables |
//! | 3 | `mpc` | SecureNN over Z_2^64: ring, PRGs, transport, the protocols, the ring product kernels (uses `spec::PerParty`) |
//! | 3 | `data` | datasets: IDX, CIFAR-10 binaries, SVHN, image folders |
//! | 4 | `infer` | one forward pass, plaintext (float, fixed point) or secure; parameters (`infer::model`) and checkpoints |
//! | 5 | `train` | the training loop, activation recording (`train::record`) and clustering (`train::cluster`) |
//! | 5 | `simulate` | secure inference checked against the cost model and plaintext; `simulate::calibrate` |
//! | 6 | `search` | plan search under budgets: per-channel options priced (`search::options`), their measured distortion (`search::distortion`), the multiple-choice knapsack (`search::knapsack`) |
//! | 7 | `sweep` | design points (named, grids, searched under budgets) through cost, training and simulation, stored by key; results and Pareto fronts |
//! | 8 | `report`, `plot` | generic output: tables (text, CSV, Markdown, JSON) and figures (PNG, SVG) |
//! | 9 | `app` | one module per command: arguments, checks, rendering |
//!
//! `main.rs` only parses the command line and calls `app`. Another Rust program uses
//! the layers directly, e.g. `spec::ArchSpec::load` -> `graph::Network::build` ->
//! `graph::sharing::Planned::new` -> `cost::price` (or `cost::price_batch`), and
//! `infer::run_batch` runs any backend over a batch of images.

pub mod allocator;
pub mod app;
pub mod cost;
pub mod data;
pub mod error;
pub mod graph;
pub mod infer;
pub mod mpc;
pub mod plot;
pub mod report;
pub mod search;
pub mod simulate;
pub mod spec;
pub mod sweep;
pub mod train;

pub use error::{Error, Result};
