//! End to end: `explore sweep` on the shipped CIFAR-10 sweep without data, and on a
//! small sweep that trains on an IDX dataset written here, killed part-way and resumed.

mod common;
use common::sweeps::stages;
use common::{explore, scratch, write_idx};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let header = r.headers().unwrap().iter().map(String::from).collect();
    let rows = r.records().map(|rec| rec.unwrap().iter().map(String::from).collect()).collect();
    (header, rows)
}

fn column<'a>(header: &[String], rows: &'a [Vec<String>], name: &str) -> Vec<&'a str> {
    let i = header.iter().position(|h| h == name).unwrap_or_else(|| panic!("no column {name}"));
    rows.iter().map(|r| r[i].as_str()).collect()
}

#[test]
fn the_cifar_sweep_without_data_prices_every_point_and_reproduces_table_5_counts() {
    let out = scratch("sweep-cifar");
    let o = explore(&["sweep", "sweeps/cifar.toml", "--samples", "0", "--out-dir", out.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("note: no CIFAR-10 data found: accuracy columns are empty; add --data DIR or EXPLORE_DATA=DIR"), "{stdout}");
    let dir = out.join("cifar");
    let (header, rows) = read_csv(&dir.join("results.csv"));
    let (_, skipped) = read_csv(&dir.join("skipped.csv"));
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0][0], "patch-all-layers/patch=16");
    assert!(skipped[0][1].contains("larger than the 8x8 map"), "{skipped:?}");
    let names = column(&header, &rows, "point");
    assert_eq!(rows.len(), 55);
    assert_eq!(names.iter().collect::<std::collections::HashSet<_>>().len(), rows.len(), "point names are unique");
    // Table 5: decisions per channel in layers 1 and 2.
    let per1 = column(&header, &rows, "relus_per_channel_relu1");
    let per2 = column(&header, &rows, "relus_per_channel_relu2");
    let tables = column(&header, &rows, "paper_table");
    let table5: Vec<(&str, &str, &str)> = (0..rows.len()).filter(|&i| tables[i] == "5").map(|i| (names[i], per1[i], per2[i])).collect();
    assert_eq!(
        table5,
        [
            ("original", "1024", "1024"),
            ("uniform-3x3", "121", "121"),
            ("uniform-4x4", "64", "64"),
            ("uniform-32x32", "1", "1"),
            ("layer1-only", "1", "1024"),
            ("layer2-only", "1024", "1"),
            ("noise", "1", "1"),
            ("fc-noise", "1", "1"),
        ]
    );
    // The cost columns are the cost model's (explore cost) for the same plan.
    let i = names.iter().position(|n| *n == "uniform-32x32").unwrap();
    assert_eq!(column(&header, &rows, "bytes")[i], "54237264");
    assert_eq!(column(&header, &rows, "rounds")[i], "86");
    assert!(column(&header, &rows, "test_accuracy_pct").iter().all(|a| a.is_empty()));
    assert_eq!(column(&header, &rows, "paper_accuracy_pct")[i], "81.13");
    // Table 7's plans name assignments clustered from the trained original; the grid's
    // cluster points, untrained, fall back to the stand-in and say so.
    let clusters = column(&header, &rows, "clusters");
    let at = |name: &str| clusters[names.iter().position(|n| *n == name).unwrap()];
    assert_eq!((at("clusters-8x8-8"), at("clusters-center-256")), ("assignment file", "assignment file"));
    assert!(names.iter().zip(&clusters).filter(|(n, _)| n.starts_with("clusters/")).all(|(_, c)| *c == "stand-in partition"));
    assert_eq!(at("uniform-32x32"), "");
    // Without training, the fronts use the paper's accuracy of the named points.
    let (ph, pr) = read_csv(&dir.join("pareto.csv"));
    assert!(column(&ph, &pr, "accuracy_source").iter().all(|s| *s == "paper"));
    let bytes_front: Vec<&str> = (0..pr.len()).filter(|&j| pr[j][0] == "bytes").map(|j| column(&ph, &pr, "point")[j]).collect();
    assert_eq!(bytes_front, ["uniform-32x32", "fc-noise", "uniform-3x3", "layer1-only"]);
    // A subset: --only keeps the points whose names contain the text.
    let o =
        explore(&["sweep", "sweeps/cifar.toml", "--samples", "0", "--only", "uniform,patch/patch=16", "--out-dir", out.to_str().unwrap()]);
    assert!(o.status.success());
    let (h, r) = read_csv(&dir.join("results.csv"));
    assert_eq!(column(&h, &r, "point"), ["uniform-3x3", "uniform-4x4", "uniform-32x32", "patch/patch=16"]);
    // Run the whole sweep again last, for the plots below.
    let o = explore(&["sweep", "sweeps/cifar.toml", "--samples", "0", "--out-dir", out.to_str().unwrap()]);
    assert!(o.status.success());
    if stdout.contains("no TrueType font") {
        eprintln!("no font on this machine: plots skipped");
    } else {
        for stem in ["accuracy-vs-bytes", "accuracy-vs-relus", "accuracy-vs-seconds_wan", "rounds-vs-relus"] {
            for ext in ["png", "svg"] {
                let f = dir.join("plots").join(format!("{stem}.{ext}"));
                assert!(std::fs::metadata(&f).map(|m| m.len() > 1000).unwrap_or(false), "{}", f.display());
            }
        }
    }
}

/// A sweep over the Fashion-MNIST network: one named point and a grid of patch sizes
/// (one too large for the 28x28 map), trained for an epoch on `data`.
fn write_sweep(dir: &Path) -> std::path::PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = format!(
        r#"name = "tiny"
architecture = "{root}/architectures/fashion_mnist.toml"
dataset = "Fashion-MNIST"
[train]
epochs = 1
batch_size = 32
lr = 0.05
[simulate]
samples = 2
[[point]]
plan = "{root}/architectures/plans/fashion_mnist/original.toml"
paper = {{ table = "6", accuracy = 92.11 }}
[[grid]]
name = "patch"
layers = ["relu1"]
group = "patch"
patch = [2, 4, 7, 14, 28, 56]
decision = "center"
"#
    );
    let f = dir.join("tiny.toml");
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn a_killed_sweep_resumes_without_redoing_finished_points_and_gives_the_same_results() {
    let dir = scratch("sweep-resume");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, 600, 100);
    let sweep = write_sweep(&dir);
    let args = |out: &Path| {
        vec![
            "sweep".to_string(),
            sweep.to_str().unwrap().into(),
            "--data".into(),
            data.to_str().unwrap().into(),
            "--out-dir".into(),
            out.to_str().unwrap().into(),
            "--quiet".into(),
        ]
    };

    // Start, wait for the first finished training, kill (SIGKILL: no clean-up).
    let out = dir.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_explore"))
        .args(args(&out))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("EXPLORE_DATA")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let train_dir = out.join("tiny/train");
    let start = Instant::now();
    let finished = |d: &Path| {
        std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
            .unwrap_or(0)
    };
    while finished(&train_dir) == 0 {
        assert!(start.elapsed() < Duration::from_secs(120), "no point finished in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it could be killed");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.join("tiny/results.csv").exists(), "killed before the end");
    let done_before = finished(&train_dir) + finished(&out.join("tiny/simulate"));
    assert!(done_before >= 1);

    // Resume: the stored stages are reused, the rest computed; 6 valid points, 2 stages each.
    let o = explore(&args(&out).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    let (computed, reused) = stages(&stdout);
    assert_eq!(computed + reused, 12, "{stdout}");
    assert_eq!(reused, done_before, "{stdout}");
    assert!(stdout.contains("skipped patch/patch=56"), "{stdout}");

    // A rerun with nothing changed computes nothing.
    let o = explore(&args(&out).iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(stages(&String::from_utf8_lossy(&o.stdout)), (0, 12));

    // The same sweep uninterrupted gives the same accuracies and secure results.
    let fresh = dir.join("fresh");
    let o = explore(&args(&fresh).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(o.status.success());
    let (h1, r1) = read_csv(&out.join("tiny/results.csv"));
    let (h2, r2) = read_csv(&fresh.join("tiny/results.csv"));
    assert_eq!(r1.len(), 6);
    for col in
        ["point", "relus", "bytes", "test_accuracy_pct", "secure_agreement_pct", "secure_accuracy_pct", "secure_counts_exact", "train_key"]
    {
        assert_eq!(column(&h1, &r1, col), column(&h2, &r2, col), "{col}");
    }
    assert!(column(&h1, &r1, "test_accuracy_pct").iter().all(|a| a.parse::<f64>().is_ok()));
    assert!(column(&h1, &r1, "secure_counts_exact").iter().all(|e| *e == "true"));
    assert!(!column(&h1, &r1, "accuracy_minus_paper")[0].is_empty());
    // What the killed run was writing is cleared by the next run.
    let leftovers: Vec<_> = walk(&out).into_iter().filter(|p| p.to_string_lossy().contains(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_warm_started_sweep_trains_the_original_once_and_fine_tunes_each_point_from_it() {
    let dir = scratch("sweep-warm");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, 300, 100);
    let root = env!("CARGO_MANIFEST_DIR");
    let sweep = |epochs: usize| {
        let text = format!(
            r#"name = "warm"
architecture = "{root}/architectures/fashion_mnist.toml"
[train]
epochs = {epochs}
batch_size = 32
init = "original"
finetune_epochs = 1
[simulate]
samples = 0
[[point]]
plan = "{root}/architectures/plans/fashion_mnist/original.toml"
[[point]]
plan = "{root}/architectures/plans/fashion_mnist/uniform-32x32.toml"
finetune_epochs = 2
[[grid]]
name = "patch"
layers = ["relu1"]
group = "patch"
patch = [4, 7, 14]
decision = "center"
[[grid]]
name = "clusters"
layers = ["relu1"]
group = "clusters"
window = 7
clusters = 4
"#
        );
        let f = dir.join(format!("warm-{epochs}.toml"));
        std::fs::write(&f, text).unwrap();
        f
    };
    let out = dir.join("out");
    let run = |f: &Path| {
        let o = explore(&["sweep", f.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out-dir", out.to_str().unwrap(), "--quiet"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stages(&String::from_utf8_lossy(&o.stdout))
    };
    // The original (2 epochs), a named point with 2 epochs of its own, three
    // fine-tuned patch points (1 epoch each), and the cluster point: its clusters
    // found from the original's decisions, then fine-tuned.
    assert_eq!(run(&sweep(2)), (7, 0));
    let (h, rows) = read_csv(&out.join("warm/results.csv"));
    assert_eq!(column(&h, &rows, "epochs"), ["2", "2", "1", "1", "1", "1"]);
    assert!(column(&h, &rows, "test_accuracy_pct").iter().all(|a| a.parse::<f64>().unwrap() > 50.0), "{rows:?}");
    assert_eq!(column(&h, &rows, "clusters"), ["", "", "", "", "", "trained original"]);
    let found: Vec<_> = walk(&out.join("warm/clusters"));
    assert_eq!(found.len(), 1, "{found:?}");
    let ids = explore::spec::plan::Assignment::load(&found[0], "relu1").unwrap();
    assert_eq!(ids.shape, [32, 28, 28]);
    assert!(ids.ids.iter().all(|&k| k < 4) && (0..4).all(|k| ids.ids.contains(&k)));
    // Nothing changed: nothing trains or clusters again.
    assert_eq!(run(&sweep(2)), (0, 7));
    // Another original retrains (and reclusters) its children too (their keys name the parent).
    assert_eq!(run(&sweep(3)), (7, 0));
    // A point's own fine-tuning epochs need a warm start.
    let cold = dir.join("cold.toml");
    let text = std::fs::read_to_string(sweep(2)).unwrap().replace("init = \"original\"\nfinetune_epochs = 1\n", "");
    let text = text.replace("name = \"warm\"", "name = \"cold\"");
    std::fs::write(&cold, &text).unwrap();
    let o = explore(&["sweep", cold.to_str().unwrap(), "--no-train", "--out-dir", out.to_str().unwrap(), "--quiet"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("[[point]] #2 key \"finetune_epochs\": goes with [train] init"), "{err}");
    // Without a warm start there is nothing to cluster from: the stand-in, and it says so.
    std::fs::write(&cold, text.replace("finetune_epochs = 2\n", "")).unwrap();
    let o = explore(&["sweep", cold.to_str().unwrap(), "--no-train", "--out-dir", out.to_str().unwrap(), "--quiet"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (h, rows) = read_csv(&out.join("cold/results.csv"));
    assert_eq!(column(&h, &rows, "clusters")[5], "stand-in partition");
    // A warm start needs to know how long to fine-tune.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, std::fs::read_to_string(sweep(2)).unwrap().replace("finetune_epochs = 1\n", "")).unwrap();
    let o = explore(&["sweep", bad.to_str().unwrap(), "--out-dir", out.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("[train] key \"finetune_epochs\": missing"), "{err}");
}

/// A warm-started sweep from a given checkpoint with two seeds per point, killed while
/// it fine-tunes: the resumed run evaluates and fine-tunes nothing twice, and its
/// results equal an uninterrupted run's.
#[test]
fn a_sweep_from_a_checkpoint_with_seeds_resumes_after_a_kill_during_fine_tuning() {
    let dir = scratch("sweep-warm-seeds");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    write_idx(&data, 600, 100);
    let root = env!("CARGO_MANIFEST_DIR");
    let arch = format!("{root}/architectures/fashion_mnist.toml");
    let ckpt = dir.join("original.safetensors");
    let o = explore(&[
        "train",
        &arch,
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--out",
        ckpt.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = format!(
        r#"name = "seeds"
architecture = "{arch}"
seeds = 2
[train]
init = "original.safetensors"
finetune_epochs = 2
finetune_lr = 0.02
batch_size = 32
[simulate]
samples = 1
[[point]]
plan = "{root}/architectures/plans/fashion_mnist/original.toml"
paper = {{ table = "6", accuracy = 92.11, megabytes = 35.04, rounds = 40, seconds = 6.55 }}
[[grid]]
name = "patch"
layers = ["relu1"]
group = "patch"
patch = [4, 7]
decision = "center"
"#
    );
    let sweep = dir.join("seeds.toml");
    std::fs::write(&sweep, text).unwrap();
    let args = |out: &Path| -> Vec<String> {
        ["sweep", sweep.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out-dir", out.to_str().unwrap(), "--quiet"]
            .map(String::from)
            .to_vec()
    };
    let out = dir.join("out");
    let mut child = Command::new(env!("CARGO_BIN_EXE_explore"))
        .args(args(&out))
        .current_dir(root)
        .env_remove("EXPLORE_DATA")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The original's evaluation and one fine-tune stored, the other three running or waiting.
    let train_dir = out.join("seeds/train");
    let finished = |d: &Path| {
        std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "json")).count())
            .unwrap_or(0)
    };
    let start = Instant::now();
    while finished(&train_dir) < 2 {
        assert!(start.elapsed() < Duration::from_secs(120), "no fine-tune finished in 2 minutes");
        assert!(child.try_wait().unwrap().is_none(), "the sweep ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done_before = finished(&train_dir) + finished(&out.join("seeds/simulate"));
    assert!(finished(&train_dir) < 5, "killed before every fine-tune finished");

    // 1 evaluation of the checkpoint (shared by both seeds), 2 points x 2 seeds
    // fine-tuned, and 3 simulations.
    let run = |out: &Path| {
        let o = explore(&args(out).iter().map(String::as_str).collect::<Vec<_>>());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        stages(&String::from_utf8_lossy(&o.stdout))
    };
    let (computed, reused) = run(&out);
    assert_eq!((computed + reused, reused), (8, done_before));
    let fresh = dir.join("fresh");
    assert_eq!(run(&fresh), (8, 0));
    let (h1, r1) = read_csv(&out.join("seeds/results.csv"));
    let (h2, r2) = read_csv(&fresh.join("seeds/results.csv"));
    for col in ["point", "test_accuracy_pct", "test_accuracy_sd_pct", "seeds", "train_key", "secure_agreement_pct"] {
        assert_eq!(column(&h1, &r1, col), column(&h2, &r2, col), "{col}");
    }
    // The original is the checkpoint, evaluated once; each grid point has two seeds,
    // their mean and sample standard deviation.
    assert_eq!(column(&h1, &r1, "seeds"), ["1", "2", "2"]);
    assert_eq!(column(&h1, &r1, "epochs"), ["0", "2", "2"]);
    assert!(column(&h1, &r1, "test_accuracy_sd_pct")[0].is_empty());
    assert!(column(&h1, &r1, "test_accuracy_sd_pct")[1..].iter().all(|s| s.parse::<f64>().is_ok_and(|v| v >= 0.0)), "{r1:?}");
    let keys = column(&h1, &r1, "train_key");
    assert!(keys[1].split(' ').count() == 2 && keys[1].split(' ').all(|k| k.len() == 32), "{keys:?}");
    // The paper's Table 8 figures beside ours.
    assert_eq!(column(&h1, &r1, "paper_mb")[0], "35.04");
    assert_eq!(column(&h1, &r1, "paper_rounds")[0], "40");
    assert_eq!(column(&h1, &r1, "paper_seconds")[0], "6.55");
    assert!(column(&h1, &r1, "paper_mb")[1].is_empty());
    // The checkpoint's recorded accuracy is the evaluation's.
    let meta = std::fs::read(&ckpt).unwrap();
    let (_, m) = safetensors::SafeTensors::read_metadata(&meta).unwrap();
    let recorded: f64 = m.metadata().as_ref().unwrap()["test_accuracy"].parse().unwrap();
    let evaluated: f64 = column(&h1, &r1, "test_accuracy_pct")[0].parse().unwrap();
    assert!((100.0 * recorded - evaluated).abs() < 0.005, "{recorded} {evaluated}");

    // Fine-tuning with Adam instead: every fine-tune is new (its key names the
    // optimizer), the checkpoint's evaluation is found in the store.
    let adam =
        std::fs::read_to_string(&sweep).unwrap().replace("finetune_lr = 0.02\n", "finetune_lr = 0.001\nfinetune_optimizer = \"adam\"\n");
    std::fs::write(&sweep, adam).unwrap();
    let (computed, reused) = run(&out);
    assert!(computed >= 4 && reused >= 1, "{computed} computed, {reused} reused");
    let (h3, r3) = read_csv(&out.join("seeds/results.csv"));
    let adam_keys = column(&h3, &r3, "train_key");
    assert_eq!(adam_keys[0], keys[0], "the original is the same checkpoint");
    for (a, s) in adam_keys[1..].iter().zip(&keys[1..]) {
        assert!(a.split(' ').all(|k| !s.contains(k)), "fine-tuned with Adam under an SGD key: {a} / {s}");
    }
}
