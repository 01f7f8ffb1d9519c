//! Plan search under a budget (the paper picks plans by hand; Block-ReLU solves a
//! multiple-choice knapsack over per-channel options). So far: the knapsack itself
//! (`knapsack`), exact by dynamic programming over discretised budgets where the
//! state space fits, else a Lagrangian relaxation that reports its duality gap.
//! Options per channel, their distortion from a trained checkpoint and the
//! `explore search` command are still to come (issue "The best plan for a budget").

pub mod knapsack;
