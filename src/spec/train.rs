//! Training settings (`explore train --config`, a sweep's `[train]`): the keys a
//! TOML file may give, their defaults and their checks. The loop that uses them is
//! `crate::train`.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Optimizer {
    Sgd,
    Adam,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Multiply by `step_gamma` at each epoch listed in `step_epochs`.
    Step,
    /// Cosine decay from `lr` to 0 over all steps.
    Cosine,
}

/// Training settings; a TOML file with these keys, flags override it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub schedule: Schedule,
    pub step_epochs: Vec<usize>,
    pub step_gamma: f64,
    /// Random crop with 4-pixel padding, and horizontal flips (3-channel inputs only).
    pub augment: bool,
    pub seed: u64,
    /// Distillation from the checkpoint a fine-tune starts from (absent: labels only;
    /// left out of the serialised settings then, so store keys of runs without it
    /// stay as they were).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distill: Option<Distill>,
}

/// Knowledge distillation (Hinton, Vinyals and Dean, 2015): the training signal mixes
/// the labels' cross-entropy (weight 1 - `weight`) with the divergence from the
/// teacher's outputs softened by `temperature` (weight `weight`, scaled by the
/// temperature squared so its gradient keeps its size). The teacher is the trained
/// original a fine-tune starts from; SNL and DeepReDuce fine-tune ReLU-reduced
/// networks this way.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Distill {
    pub temperature: f64,
    pub weight: f64,
}

impl Default for TrainConfig {
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 10,
            batch_size: 128,
            optimizer: Optimizer::Sgd,
            lr: 0.05,
            momentum: 0.9,
            weight_decay: 5e-4,
            schedule: Schedule::Cosine,
            step_epochs: vec![],
            step_gamma: 0.1,
            augment: false,
            seed: 1,
            distill: None,
        }
    }
}

impl TrainConfig {
    pub fn load(path: &Path) -> Result<TrainConfig> {
        let c: TrainConfig = super::parse_toml(path, &super::read_text(path)?)?;
        c.check(path)?;
        Ok(c)
    }

    pub fn check(&self, path: &Path) -> Result<()> {
        let bad = |key: &str, m: &str| Err(Error::invalid(path, Some(format!("key \"{key}\"")), m.to_string()));
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("lr", "must be a positive number");
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("momentum", "must be in [0, 1)");
        }
        if let Some(d) = self.distill {
            if !(d.temperature > 0.0 && d.temperature.is_finite()) {
                return bad("distill", &format!("temperature must be a positive number, got {}", d.temperature));
            }
            if !(0.0..=1.0).contains(&d.weight) {
                return bad("distill", &format!("weight must be in [0, 1], got {}", d.weight));
            }
        }
        Ok(())
    }

    /// The learning rate at a step of an epoch, by the schedule.
    pub fn lr_at(&self, epoch: usize, step: usize, total_steps: usize) -> f64 {
        match self.schedule {
            Schedule::Constant => self.lr,
            Schedule::Step => self.lr * self.step_gamma.powi(self.step_epochs.iter().filter(|&&e| epoch >= e).count() as i32),
            Schedule::Cosine => self.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total_steps.max(1) as f64).cos()),
        }
    }
}
