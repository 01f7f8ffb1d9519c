//! End to end: train a small network, cluster its ReLU decisions, and use the
//! assignment in a plan that the cost model, the simulator and training all accept.

mod common;
use common::{explore, explore_json, scratch, write_idx};

#[test]
fn cluster_writes_an_assignment_maps_and_a_plan_that_every_stage_runs() {
    let dir = scratch("cluster");
    write_idx(&dir, 300, 60);
    let data = dir.to_str().unwrap();
    let ckpt = dir.join("model.safetensors");
    let o = explore(&["train", "architectures/fashion_mnist.toml", "--data", data, "--epochs", "1", "--out", ckpt.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let out = dir.join("c.safetensors");
    let plan = dir.join("clustered.toml");
    let args = [
        "cluster",
        "architectures/fashion_mnist.toml",
        "--weights",
        ckpt.to_str().unwrap(),
        "--data",
        data,
        "--layers",
        "relu1",
        "--window",
        "7",
        "--clusters",
        "4",
        "--samples",
        "200",
        "--out",
        out.to_str().unwrap(),
        "--plan-out",
        plan.to_str().unwrap(),
        "--format",
        "json",
    ];
    let r = explore_json(&args);
    assert_eq!(r["images"], 200);
    let layer = &r["layers"][0];
    assert_eq!(layer["layer"], "relu1");
    assert_eq!(layer["decisions_per_channel"], 16 * 4);
    let share = layer["largest_cluster_share"].as_f64().unwrap();
    assert!((0.25..=1.0).contains(&share), "{share}");
    let map = image::open(dir.join("c-relu1.png")).unwrap();
    assert!(map.width() > 28 && map.height() > 28);
    // Same inputs, same assignment (the metadata's key order may differ).
    let ids = |bytes: &[u8]| safetensors::SafeTensors::deserialize(bytes).unwrap().tensor("relu1").unwrap().data().to_vec();
    let first = ids(&std::fs::read(&out).unwrap());
    assert_eq!(first.len(), 4 * 32 * 28 * 28);
    explore_json(&args);
    assert!(ids(&std::fs::read(&out).unwrap()) == first, "a second run clustered differently");

    // The plan prices 64 decisions per channel of relu1, and the secure simulation
    // of it sends exactly what the model predicts.
    let p = plan.to_str().unwrap();
    let cost = explore_json(&["cost", "architectures/fashion_mnist.toml", "--plan", p, "--format", "json"]);
    let relu1 = cost["layers"].as_array().unwrap().iter().find(|l| l["name"] == "relu1").unwrap();
    let channels = relu1["output_shape"][0].as_u64().unwrap();
    assert_eq!(relu1["relus"].as_u64().unwrap(), channels * 64);
    let sim = explore_json(&["simulate", "architectures/fashion_mnist.toml", "--plan", p, "--samples", "1", "--format", "json"]);
    assert_eq!(sim["total"]["measured"], sim["total"]["predicted"]);
    let o = explore(&["train", "architectures/fashion_mnist.toml", "--plan", p, "--data", data, "--epochs", "1", "--limit", "100"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    // An assignment that does not fit the plan is refused, naming the file and entry.
    let text = std::fs::read_to_string(&plan).unwrap().replace("clusters = 4", "clusters = 3");
    std::fs::write(&plan, text).unwrap();
    let o = explore(&["cost", "architectures/fashion_mnist.toml", "--plan", p]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("clustered.toml: [relu.relu1]") && err.contains("is in cluster 3, but there are 3 per window"), "{err}");
}
