//! End to end: train on a small IDX dataset written here, save a checkpoint, run
//! secure inference with it on the test images.

mod common;
use common::{explore, explore_json, scratch, write_idx};

/// `explore train` for two epochs of batches of 32, the report as JSON.
fn two_epochs<'a>(arch: &'a str, plan: &'a str, data: &'a str, ckpt: &'a std::path::Path) -> Vec<&'a str> {
    let out = ckpt.to_str().unwrap();
    vec!["train", arch, "--plan", plan, "--data", data, "--epochs", "2", "--batch-size", "32", "--out", out, "--format", "json"]
}

#[test]
fn train_then_simulate_with_the_checkpoint() {
    let dir = scratch("e2e");
    write_idx(&dir, 300, 100);
    let data = dir.to_str().unwrap();
    let ckpt = dir.join("model.safetensors");
    let plan = "architectures/plans/fashion_mnist/uniform-3x3.toml";
    let o = explore(&two_epochs("architectures/fashion_mnist.toml", plan, data, &ckpt));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["test_accuracy", "train_seconds", "epochs", "images_per_second"] {
        assert!(v[key].is_number(), "{key} missing: {v}");
    }
    assert!(v["test_accuracy"].as_f64().unwrap() >= 0.8, "{v}");
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("epoch 1/2: loss") && log.contains("epoch 2/2: loss"), "{log}");

    let s = explore_json(&[
        "simulate",
        "architectures/fashion_mnist.toml",
        "--plan",
        plan,
        "--weights",
        ckpt.to_str().unwrap(),
        "--data",
        data,
        "--samples",
        "6",
        "--format",
        "json",
    ]);
    assert_eq!(s["total"]["agreement"], 1.0, "{s}");
    assert_eq!(s["total"]["samples"], 6);
    assert!(s["total"]["accuracy"].as_f64().unwrap() >= 0.5);
    assert!(s["weights"].as_str().unwrap().starts_with("checkpoint"));

    // Activation recording with the same checkpoint.
    let patterns = dir.join("patterns.safetensors");
    let tv = explore_json(&[
        "record",
        "architectures/fashion_mnist.toml",
        "--plan",
        plan,
        "--weights",
        ckpt.to_str().unwrap(),
        "--data",
        data,
        "--layers",
        "relu1,relu2",
        "--samples",
        "40",
        "--out",
        patterns.to_str().unwrap(),
        "--format",
        "json",
        "--figure",
        dir.join("tv").to_str().unwrap(),
    ]);
    // The paper's Figure 3, where the machine has a font to draw its text with.
    if std::path::Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        let png = image::open(dir.join("tv.png")).unwrap();
        assert!(png.width() > 500);
        let svg = std::fs::read_to_string(dir.join("tv.svg")).unwrap();
        assert!(svg.contains("total variation") && svg.contains("relu1"), "{svg}");
    }
    assert_eq!(tv[0]["layer"], "conv1");
    assert!(tv[0]["total_variation"].as_f64().unwrap() > 0.0);
    // Header and two u8 tensors of 40 x 32 x 28 x 28 and 40 x 64 x 14 x 14.
    assert!(std::fs::metadata(&patterns).unwrap().len() > 40 * (32 * 784 + 64 * 196));

    // A checkpoint refuses another plan.
    let o = explore(&["simulate", "architectures/fashion_mnist.toml", "--weights", ckpt.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("checkpoint is for plan \"uniform-3x3\", not \"original\""), "{err}");
}

#[test]
fn training_mistakes_give_one_line_and_exit_2() {
    let dir = scratch("bad");
    let o = explore(&["train", "architectures/svhn.toml", "--epochs", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no dataset: pass --data DIR"));
    let o = explore(&["train", "architectures/svhn.toml", "--data", dir.join("nowhere").to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("dataset directory not found"));
    write_idx(&dir, 20, 10);
    let o = explore(&["train", "architectures/svhn.toml", "--data", dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("the network's input is [3, 32, 32]"));
    let cfg = dir.join("cfg.toml");
    std::fs::write(&cfg, "epochs = 1\nlearning_rate = 0.1\n").unwrap();
    let o = explore(&["train", "architectures/fashion_mnist.toml", "--data", dir.to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("cfg.toml") && err.contains("unknown field `learning_rate`"), "{err}");
}

#[test]
fn a_plan_starts_from_the_original_weights_with_init_and_not_with_resume() {
    let dir = scratch("init");
    write_idx(&dir, 300, 100);
    let data = dir.to_str().unwrap();
    let ckpt = dir.join("original.safetensors");
    let arch = "architectures/fashion_mnist.toml";
    let base = ["train", arch, "--data", data, "--batch-size", "32", "--format", "json"];
    let mut args = base.to_vec();
    args.extend(["--epochs", "2", "--out", ckpt.to_str().unwrap()]);
    let original = explore_json(&args)["test_accuracy"].as_f64().unwrap();
    assert!(original >= 0.8, "{original}");
    // One epoch at a learning rate too small to learn anything: what the weights
    // started from shows. From the original's weights, the plan keeps most of its
    // accuracy; from random weights it is near chance.
    let plan = "architectures/plans/fashion_mnist/uniform-3x3.toml";
    let still = ["--plan", plan, "--epochs", "1", "--lr", "1e-9"];
    let mut warm = base.to_vec();
    warm.extend(still);
    warm.extend(["--init", ckpt.to_str().unwrap()]);
    let warm = explore_json(&warm)["test_accuracy"].as_f64().unwrap();
    let mut cold = base.to_vec();
    cold.extend(still);
    let cold = explore_json(&cold)["test_accuracy"].as_f64().unwrap();
    assert!(warm >= 0.5 && cold <= 0.3, "from the original {warm}, from random {cold}");
    // Distilling from the original (its outputs alone, weight 1): the plan learns the
    // original's function; the settings are in the report and the checkpoint.
    let student = dir.join("student.safetensors");
    let mut taught = base.to_vec();
    taught.extend(["--plan", plan, "--epochs", "1", "--init", ckpt.to_str().unwrap(), "--distill", "4", "--distill-weight", "1"]);
    taught.extend(["--out", student.to_str().unwrap()]);
    let report = explore_json(&taught);
    assert_eq!(report["config"]["distill"], serde_json::json!({ "temperature": 4.0, "weight": 1.0 }));
    let taught = report["test_accuracy"].as_f64().unwrap();
    assert!(taught >= 0.6, "distilled {taught}");
    // No teacher: without --init, or with a checkpoint that is not of the original.
    let o = explore(&["train", arch, "--data", data, "--distill", "4"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--init"));
    let o = explore(&["train", arch, "--plan", plan, "--data", data, "--init", student.to_str().unwrap(), "--distill", "4"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("student.safetensors") && err.contains("plan \"uniform-3x3\", not \"original\""), "{err}");
    // --resume takes only a checkpoint of the same plan; --init of the same network.
    let mut resume = base.to_vec();
    resume.extend(["--plan", plan, "--epochs", "1", "--resume", ckpt.to_str().unwrap()]);
    let o = explore(&resume);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("checkpoint is for plan \"original\", not \"uniform-3x3\""), "{err}");
    let o = explore(&["train", "architectures/svhn.toml", "--data", data, "--init", ckpt.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    // A network of the same name with other shapes: the first tensor that differs is named.
    let text = std::fs::read_to_string(arch).unwrap().replacen("out_channels = 32", "out_channels = 16", 1);
    let other = dir.join("narrow.toml");
    std::fs::write(&other, text).unwrap();
    let o = explore(&["train", other.to_str().unwrap(), "--data", data, "--init", ckpt.to_str().unwrap(), "--epochs", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("tensor \"conv1.weight\" is F32 [32, 1, 3, 3], expected F32 [16, 1, 3, 3]"), "{err}");
    // A checkpoint cut short on disk: the file is named, nothing trains.
    let bytes = std::fs::read(&ckpt).unwrap();
    let cut = dir.join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let o = explore(&["train", arch, "--data", data, "--init", cut.to_str().unwrap(), "--epochs", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("cut.safetensors") && err.contains("not a safetensors file"), "{err}");
    // A plan that shares a layer the network does not have: the plan and layer are named.
    let bad_plan = dir.join("ghost.toml");
    std::fs::write(&bad_plan, "name = \"ghost\"\n[relu.relu9]\ngroup = \"channel\"\ndecision = \"center\"\n").unwrap();
    let o = explore(&["train", arch, "--plan", bad_plan.to_str().unwrap(), "--data", data, "--init", ckpt.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("ghost.toml") && err.contains("relu9"), "{err}");
}

#[test]
fn lenet_with_max_pooling_trains_and_its_secure_inference_agrees() {
    // Max pooling forward and backward in training, then the SecureNN Maxpool protocol
    // on the trained weights, under a plan that shares the ReLUs after the pools.
    let dir = scratch("lenet");
    write_idx(&dir, 300, 100);
    let data = dir.to_str().unwrap();
    let ckpt = dir.join("lenet.safetensors");
    let plan = "architectures/plans/lenet_mnist/uniform-2x2.toml";
    let t = explore_json(&two_epochs("architectures/lenet_mnist.toml", plan, data, &ckpt));
    assert!(t["test_accuracy"].as_f64().unwrap() >= 0.8, "{t}");
    let s = explore_json(&[
        "simulate",
        "architectures/lenet_mnist.toml",
        "--plan",
        plan,
        "--weights",
        ckpt.to_str().unwrap(),
        "--data",
        data,
        "--samples",
        "4",
        "--format",
        "json",
    ]);
    assert_eq!(s["total"]["agreement"], 1.0, "{s}");
    assert_eq!(s["total"]["measured"], s["total"]["predicted"], "{s}");
    assert_eq!(s["total"]["measured"]["rounds"], 92);
}
