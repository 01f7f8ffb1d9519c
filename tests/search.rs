//! End to end: `explore search` on a small trained network. The plan it writes fits
//! its budget, the cost model and the secure simulation price it exactly as the
//! search predicted, a second search reads the cached distortion, and budgets that
//! cannot be met or read exit 2 with one line naming them.

mod common;
use common::{explore, explore_json, scratch, write_idx};

#[test]
fn searched_plans_fit_their_budget_and_simulate_at_the_predicted_cost() {
    let dir = scratch("search");
    write_idx(&dir, 300, 60);
    let data = dir.to_str().unwrap();
    let ckpt = dir.join("model.safetensors");
    let o = explore(&["train", "architectures/fashion_mnist.toml", "--data", data, "--epochs", "1", "--out", ckpt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let arch = "architectures/fashion_mnist.toml";
    let original = explore_json(&["cost", arch, "--format", "json"]);
    let full_mb = original["total"]["bits"].as_f64().unwrap() / 8e6;

    let plan = dir.join("searched.toml");
    let search = |budgets: &[&str], extra: &[&str]| {
        let mut args = vec!["search", arch, "--weights", ckpt.to_str().unwrap(), "--data", data, "--samples", "48"];
        for b in budgets {
            args.extend(["--budget", b]);
        }
        args.extend(["-o", plan.to_str().unwrap(), "--format", "json"]);
        args.extend(extra);
        explore(&args)
    };
    let budget = format!("mb<={:.3}", full_mb * 0.6);
    let o = search(&[&budget], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["distortion_cached"], false);
    let b = &r["budgets"][0];
    let (cost, predicted, limit) = (b["cost"].as_f64().unwrap(), b["predicted"].as_f64().unwrap(), b["limit"].as_f64().unwrap());
    assert!(cost <= limit, "{r}");
    assert!((cost - predicted).abs() < 1e-9 * cost, "cost model {cost} vs knapsack {predicted}");
    // Tight: a budget 60% of the original leaves less than one channel's 2x2 step unused.
    assert!(cost > limit * 0.99, "{r}");
    assert_eq!(r["duality_gap"], serde_json::Value::Null);

    // The plan is per-channel, reads back, and prices and simulates as predicted.
    let p = plan.to_str().unwrap();
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(text.contains("group = \"per-channel\"") && text.contains("[search]"), "{text}");
    let priced = explore_json(&["cost", arch, "--plan", p, "--format", "json"]);
    let total = &priced["total"];
    assert_eq!(total["relus"], r["relus"]);
    assert_eq!(total["rounds"], r["rounds"]);
    assert!((total["bits"].as_f64().unwrap() / 8e6 - cost).abs() < 1e-9);
    let sim = explore_json(&["simulate", arch, "--plan", p, "--samples", "1", "--format", "json"]);
    assert_eq!(sim["total"]["measured"], sim["total"]["predicted"]);

    // A second search reads the distortion from the cache and chooses the same plan.
    let o = search(&[&budget], &[]);
    let again: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(again["distortion_cached"], true);
    assert_eq!(again["layers"], r["layers"]);
    assert_eq!(std::fs::read_to_string(&plan).unwrap(), text);

    // Two budgets at once: the second (decisions) binds as well.
    let relus = r["relus"].as_u64().unwrap();
    let o = search(&[&budget, &format!("relus<={}", relus * 9 / 10)], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let two: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(two["relus"].as_u64().unwrap() <= relus * 9 / 10);

    // Budgets that cannot be met or read: exit 2, one line naming the budget.
    let fails = |budgets: &[&str], expect: &str| {
        let o = search(budgets, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{budgets:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(expect), "{budgets:?}: {err}");
    };
    fails(&["mb<=1"], "budget \"mb<=1\": below the cheapest reachable plan, ");
    fails(&["rounds<=10"], "budget \"rounds<=10\": below the cheapest reachable plan, 38 rounds");
    fails(&["gb<=1"], "unknown unit \"gb\"");
    fails(&["offline-mb<=1"], "prices no offline phase");
    fails(&["mb<=lots"], "\"lots\" is not a number");
}
