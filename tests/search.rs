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

    // Fine-tuned from the checkpoint on request: its accuracy reported, its weights beside the plan.
    let o = search(&[&budget], &["--finetune-epochs", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let tuned: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let acc = tuned["finetuned_test_accuracy_pct"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&acc) && tuned["finetune_epochs"] == 1, "{tuned}");
    assert!(plan.with_extension("safetensors").is_file());

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
    let o = search(&[&budget], &["--sides", "0,2"]);
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    let o = search(&[&budget], &["--layers", "relu9"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--layers relu9: no ReLU layer of that name (ReLU layers: relu1, relu2, relu3)"), "{err}");
}

/// A sweep's `[search]`: one point per budget, searched from the trained original,
/// fine-tuned and simulated like the others, drawn as their own series; without
/// training they are skipped with the reason.
#[test]
fn a_sweep_searches_one_point_per_budget_and_draws_them() {
    let dir = scratch("search-sweep");
    write_idx(&dir, 300, 60);
    let root = env!("CARGO_MANIFEST_DIR");
    let original = explore_json(&["cost", "architectures/fashion_mnist.toml", "--format", "json"]);
    let mb = original["total"]["bits"].as_f64().unwrap() / 8e6;
    let relus = original["total"]["relus"].as_u64().unwrap();
    let (b1, b2) = (format!("mb<={:.3}", mb * 0.7), format!("relus<={} & mb<={:.3}", relus / 2, mb * 0.8));
    let sweep = dir.join("s.toml");
    std::fs::write(
        &sweep,
        format!(
            r#"name = "s"
architecture = "{root}/architectures/fashion_mnist.toml"
[train]
epochs = 1
batch_size = 32
lr = 0.05
init = "original"
finetune_epochs = 1
[simulate]
samples = 1
[search]
budgets = ["{b1}", "{b2}"]
samples = 32
[[point]]
plan = "{root}/architectures/plans/fashion_mnist/uniform-3x3.toml"
"#
        ),
    )
    .unwrap();
    let store = dir.join("store");
    let args = ["sweep", sweep.to_str().unwrap(), "--data", dir.to_str().unwrap(), "--store", store.to_str().unwrap(), "-q"];
    let o = explore(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut csv = csv::Reader::from_path(store.join("results.csv")).unwrap();
    let header = csv.headers().unwrap().clone();
    let col = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    let searched: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[col("source")] == "search").collect();
    assert_eq!(searched.len(), 2, "{rows:?}");
    assert_eq!(&searched[0][col("point")], format!("search {b1}"));
    assert_eq!(&searched[1][col("parameters")], format!("relus<={} & mb<={:.3}", relus / 2, mb * 0.8));
    for r in &searched {
        assert!(!r[col("test_accuracy_pct")].is_empty(), "fine-tuned: {r:?}");
        assert_eq!(&r[col("secure_counts_exact")], "true");
        assert!(r[col("bytes")].parse::<f64>().unwrap() / 1e6 <= mb * 0.8);
    }
    assert!(searched[1][col("relus")].parse::<u64>().unwrap() <= relus / 2);
    let svg = std::fs::read_to_string(store.join("plots/accuracy-vs-bytes.svg")).unwrap();
    assert!(svg.contains("searched under budgets"), "the searched series is drawn");
    // Stored: a rerun computes nothing.
    let out = String::from_utf8_lossy(&explore(&args).stdout).into_owned();
    assert!(out.contains("; 0 stages computed"), "{out}");

    // A budget the sweep cannot read stops it before anything runs, naming the file and key.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(&sweep).unwrap().replace(&b1, "gb<=1")).unwrap();
    let o = explore(&["sweep", bad.to_str().unwrap(), "--no-train", "--store", dir.join("bad").to_str().unwrap(), "-q"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml: [search] key \"budgets\": budget \"gb<=1\": unknown unit \"gb\""), "{err}");

    // Without training there is no original to search from: skipped, with the reason.
    let o = explore(&["sweep", sweep.to_str().unwrap(), "--no-train", "--store", dir.join("cold").to_str().unwrap(), "-q"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let skipped = std::fs::read_to_string(dir.join("cold/skipped.csv")).unwrap();
    assert!(skipped.contains("search mb<=") && skipped.contains("needs the trained original"), "{skipped}");
}
