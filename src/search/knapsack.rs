//! The multiple-choice knapsack: one option per group (a channel's sharing choices),
//! each with a distortion and a cost in every budgeted unit (bytes, ReLUs, ...,
//! discretised to integers by the caller), minimising the summed distortion with
//! every summed cost at most its budget.
//!
//! Exact: dynamic programming over the product of the budgets (states 0..=B_j in
//! each), `best[s]` the least distortion whose costs fit under `s` componentwise, when
//! the product fits under `state_limit`. Otherwise the first budget stays in the
//! dynamic programme and the others are priced by Lagrange multipliers (subgradient
//! steps); the best feasible plan found is returned with its duality gap (its
//! distortion minus the best lower bound), so a caller knows how far from optimal it
//! may be.

/// One option of a group: its distortion and its cost in each budgeted unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub distortion: f64,
    pub costs: Vec<u64>,
}

/// The chosen option per group, their summed distortion and costs, and the duality
/// gap (`None` when solved exactly).
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    pub picks: Vec<usize>,
    pub distortion: f64,
    pub costs: Vec<u64>,
    pub gap: Option<f64>,
}

/// Solves the knapsack over `groups` (each with at least one option) under `budgets`
/// (one per cost unit); `None` when no choice fits, and also when even the first
/// budget alone has more states than `state_limit` (discretise more coarsely then).
pub fn solve(groups: &[Vec<Choice>], budgets: &[u64], state_limit: usize) -> Option<Solution> {
    let states = budgets.iter().try_fold(1usize, |acc, &b| acc.checked_mul(usize::try_from(b).ok()?.checked_add(1)?));
    match states {
        Some(s) if s <= state_limit => exact(groups, budgets, &vec![0.0; budgets.len()], budgets.len()),
        _ => lagrangian(groups, budgets, state_limit),
    }
}

/// The exact programme over the first `kept` budgets, with the costs of the others
/// added to the distortion at `prices` (all zero when every budget is kept).
fn exact(groups: &[Vec<Choice>], budgets: &[u64], prices: &[f64], kept: usize) -> Option<Solution> {
    let dims: Vec<usize> = budgets[..kept].iter().map(|&b| b as usize + 1).collect();
    let states: usize = dims.iter().product();
    // Mixed-radix strides: state s holds coordinate j at (s / stride_j) % dims_j.
    let strides: Vec<usize> = (0..kept).map(|j| dims[..j].iter().product()).collect();
    let priced = |c: &Choice| c.distortion + c.costs[kept..].iter().zip(&prices[kept..]).map(|(&c, p)| c as f64 * p).sum::<f64>();
    let mut best = vec![0.0f64; states];
    // For each group, the option picked at each state (u32::MAX: none fits).
    let mut picks: Vec<Vec<u32>> = Vec::with_capacity(groups.len());
    for options in groups {
        let mut next = vec![f64::INFINITY; states];
        let mut pick = vec![u32::MAX; states];
        for (k, option) in options.iter().enumerate() {
            let offset: usize = option.costs[..kept].iter().zip(&strides).map(|(&c, &st)| c as usize * st).sum();
            let value = priced(option);
            for s in 0..states {
                // The option fits under state s when every coordinate covers its cost.
                let fits = (0..kept).all(|j| (s / strides[j]) % dims[j] >= option.costs[j] as usize);
                if fits && best[s - offset] + value < next[s] {
                    next[s] = best[s - offset] + value;
                    pick[s] = k as u32;
                }
            }
        }
        best = next;
        picks.push(pick);
    }
    let top = states - 1;
    if !best[top].is_finite() {
        return None;
    }
    let mut choice = vec![0; groups.len()];
    let mut s = top;
    for g in (0..groups.len()).rev() {
        let k = picks[g][s] as usize;
        choice[g] = k;
        s -= groups[g][k].costs[..kept].iter().zip(&strides).map(|(&c, &st)| c as usize * st).sum::<usize>();
    }
    Some(summarise(groups, choice, None))
}

fn summarise(groups: &[Vec<Choice>], picks: Vec<usize>, gap: Option<f64>) -> Solution {
    let units = groups.first().and_then(|g| g.first()).map_or(0, |c| c.costs.len());
    let mut costs = vec![0u64; units];
    let mut distortion = 0.0;
    for (g, &k) in groups.iter().zip(&picks) {
        distortion += g[k].distortion;
        for (t, c) in costs.iter_mut().zip(&g[k].costs) {
            *t += c;
        }
    }
    Solution { picks, distortion, costs, gap }
}

/// The first budget exact, the others priced: a lower bound from every price vector
/// (the priced optimum minus the prices times the budgets), and the best plan that
/// fits every budget among those the prices produce.
fn lagrangian(groups: &[Vec<Choice>], budgets: &[u64], state_limit: usize) -> Option<Solution> {
    if budgets.is_empty() || budgets[0] as usize >= state_limit {
        // Even one budget does not fit: the caller must discretise more coarsely.
        return None;
    }
    let n = budgets.len();
    let mut prices = vec![0.0; n];
    let (mut lower, mut feasible): (f64, Option<Solution>) = (f64::NEG_INFINITY, None);
    // A step scale from the distortions' spread, per unit of each budget.
    let spread: f64 = groups.iter().flatten().map(|c| c.distortion.abs()).fold(0.0, f64::max).max(1e-9);
    for it in 0..200 {
        let solution = exact(groups, budgets, &prices, 1)?;
        let bound = solution.distortion + (1..n).map(|j| prices[j] * (solution.costs[j] as f64 - budgets[j] as f64)).sum::<f64>();
        lower = lower.max(bound);
        let fits = (1..n).all(|j| solution.costs[j] <= budgets[j]);
        if fits && feasible.as_ref().is_none_or(|f| solution.distortion < f.distortion) {
            feasible = Some(solution.clone());
        }
        // Subgradient: raise the price of every budget the plan exceeds, lower the rest.
        let step = spread / (1.0 + it as f64);
        for j in 1..n {
            let excess = (solution.costs[j] as f64 - budgets[j] as f64) / budgets[j].max(1) as f64;
            prices[j] = (prices[j] + step * excess).max(0.0);
        }
    }
    feasible.map(|f| Solution { gap: Some((f.distortion - lower).max(0.0)), ..f })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every combination of one option per group: the least distortion that fits.
    fn brute_force(groups: &[Vec<Choice>], budgets: &[u64]) -> Option<f64> {
        let mut best: Option<f64> = None;
        let mut pick = vec![0usize; groups.len()];
        loop {
            let s = summarise(groups, pick.clone(), None);
            if s.costs.iter().zip(budgets).all(|(c, b)| c <= b) && best.is_none_or(|b| s.distortion < b) {
                best = Some(s.distortion);
            }
            // The next combination, as an odometer.
            let mut g = 0;
            loop {
                if g == groups.len() {
                    return best;
                }
                pick[g] += 1;
                if pick[g] < groups[g].len() {
                    break;
                }
                pick[g] = 0;
                g += 1;
            }
        }
    }

    /// Up to 12 groups of 1 to 4 options, costs 0..16 in one or two units, integer
    /// distortions (so sums are exact and ties compare equal), budgets that may or may
    /// not admit a solution.
    fn instance() -> impl Strategy<Value = (Vec<Vec<Choice>>, Vec<u64>)> {
        (1usize..=2).prop_flat_map(|units| {
            let choice = (0u32..100, prop::collection::vec(0u64..16, units)).prop_map(|(d, costs)| Choice { distortion: d as f64, costs });
            let groups = prop::collection::vec(prop::collection::vec(choice, 1..=4), 1..=12);
            (groups, prop::collection::vec(0u64..120, units))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

        #[test]
        fn the_exact_programme_equals_brute_force((groups, budgets) in instance()) {
            let found = solve(&groups, &budgets, 1 << 20);
            prop_assert_eq!(found.as_ref().map(|s| s.distortion), brute_force(&groups, &budgets));
            if let Some(s) = found {
                prop_assert_eq!(s.gap, None);
                prop_assert!(s.costs.iter().zip(&budgets).all(|(c, b)| c <= b));
                prop_assert_eq!(summarise(&groups, s.picks.clone(), None).distortion, s.distortion);
            }
        }

        #[test]
        fn the_relaxation_fits_the_budgets_and_brackets_the_optimum((groups, budgets) in instance()) {
            // A state limit that keeps only the first budget exact.
            let limit = budgets[0] as usize + 1;
            if budgets.len() == 2 && (budgets[1] as usize + 1) * limit > limit {
                let optimum = brute_force(&groups, &budgets);
                if let Some(s) = solve(&groups, &budgets, limit) {
                    let gap = s.gap.expect("a relaxed solve reports its gap");
                    prop_assert!(s.costs.iter().zip(&budgets).all(|(c, b)| c <= b));
                    let optimum = optimum.expect("a feasible plan exists");
                    prop_assert!(s.distortion >= optimum - 1e-9);
                    prop_assert!(s.distortion - gap <= optimum + 1e-6, "bound {} above optimum {}", s.distortion - gap, optimum);
                }
            }
        }
    }

    #[test]
    fn a_small_instance_by_hand() {
        // Two channels, options (distortion, bytes): keep both (0, 10), share one (5, 4)...
        let g =
            |a: (f64, u64), b: (f64, u64)| vec![Choice { distortion: a.0, costs: vec![a.1] }, Choice { distortion: b.0, costs: vec![b.1] }];
        let groups = vec![g((0.0, 10), (5.0, 4)), g((0.0, 10), (1.0, 3))];
        assert_eq!(solve(&groups, &[20], 100).unwrap().picks, [0, 0]);
        assert_eq!(solve(&groups, &[13], 100).unwrap().picks, [0, 1]);
        assert_eq!(solve(&groups, &[7], 100).unwrap().picks, [1, 1]);
        assert_eq!(solve(&groups, &[6], 100), None);
    }
}
