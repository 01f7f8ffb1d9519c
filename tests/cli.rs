//! End-to-end tests of the `explore` binary: outputs for scripts, and one clear error
//! line with exit code 2 for each kind of mistake in an input file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn explore(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_explore")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().expect("the binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("explore-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Runs, expects exit code 2 and exactly one stderr line naming `file` and
/// containing `fragment`.
fn expect_error(args: &[&str], file: &str, fragment: &str) {
    let o = explore(args);
    let err = String::from_utf8(o.stderr.clone()).unwrap();
    assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with(&format!("error: {file}")), "does not name {file}: {err}");
    assert!(err.contains(fragment), "expected `{fragment}` in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

const HEAD: &str = "name = \"t\"\n[input]\nshape = [3, 8, 8]\n";
const CONV: &str = "[[layers]]\nname = \"conv1\"\nop = \"conv\"\nout_channels = 4\nkernel = 3\npadding = 1\n";
const RELU: &str = "[[layers]]\nname = \"relu1\"\nop = \"relu\"\n";

/// A mistyped `EXPLORE_SIMD` is refused before any work, naming the variable, so that
/// a timing of "the AVX2 path" cannot silently be one of the widest.
#[test]
fn an_unknown_simd_variant_is_refused() {
    let run = |value: &str| {
        Command::new(env!("CARGO_BIN_EXE_explore"))
            .args(["cost", "architectures/cifar10.toml"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("EXPLORE_SIMD", value)
            .output()
            .expect("the binary runs")
    };
    let o = run("avx3");
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim_end(),
        "error: EXPLORE_SIMD: \"avx3\" is not a variant: use avx2, baseline or native (unset: the widest this CPU runs)"
    );
    for known in ["avx2", "baseline", "native"] {
        assert!(run(known).status.success(), "EXPLORE_SIMD={known}");
    }
}

#[test]
fn cost_json_has_the_documented_fields() {
    let o = explore(&["cost", "architectures/cifar10.toml", "--format", "json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["architecture"], "cifar10-minionn");
    assert_eq!(v["plan"], "original");
    assert_eq!(v["protocol"], "securenn");
    assert_eq!(v["total"]["rounds"], 86);
    assert_eq!(v["total"]["relus"], 173_056);
    assert_eq!(v["total"]["bytes"], 141_184_080u64);
    let relu1 = &v["layers"][1];
    assert_eq!(relu1["name"], "relu1");
    assert_eq!(relu1["op"], "relu");
    assert_eq!(relu1["output_shape"], serde_json::json!([64, 32, 32]));
    assert_eq!(relu1["relus"], 65_536);
    assert_eq!(relu1["bits_by_party"].as_array().unwrap().len(), 3);
    for key in ["linear", "drelu", "mul"] {
        assert!(relu1["bits_by_protocol"][key].is_u64(), "{key}");
    }
    let est: Vec<&str> = v["estimates"].as_array().unwrap().iter().map(|e| e["profile"].as_str().unwrap()).collect();
    assert_eq!(est, ["lan", "wan"]);
}

#[test]
fn cost_with_a_plan_reports_the_saving() {
    let o =
        explore(&["cost", "architectures/cifar10.toml", "--plan", "architectures/plans/cifar10/uniform-32x32.toml", "--format", "json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["plan"], "uniform-32x32");
    assert_eq!(v["total"]["rounds"], 86);
    assert_eq!(v["saving"]["baseline_bytes"], 141_184_080u64);
    let saved = v["saving"]["bytes_saved_percent"].as_f64().unwrap();
    assert!((saved - 61.58).abs() < 0.01, "{saved}");
    let table = stdout(&explore(&["cost", "architectures/cifar10.toml", "--plan", "architectures/plans/cifar10/uniform-32x32.toml"]));
    assert!(table.contains("141.184 MB -> 54.237 MB (61.6% saved)"), "{table}");
    assert!(table.contains("priced by protocol table \"securenn\" (built-in)"), "{table}");
}

#[test]
fn cost_csv_has_one_row_per_layer_and_a_total() {
    let o = explore(&["cost", "architectures/svhn.toml", "--format", "csv"]);
    let text = stdout(&o);
    let mut r = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(r.headers().unwrap().get(0), Some("layer"));
    let names: Vec<String> = r.records().map(|x| x.unwrap()[0].to_string()).collect();
    assert_eq!(names, ["conv1", "relu1", "pool1", "conv2", "relu2", "flatten", "fc", "total"]);
}

#[test]
fn protocol_and_profile_overrides_are_used_and_named() {
    let dir = scratch("override");
    let table =
        stdout(&explore(&["protocol"])).replace("name = \"securenn\"", "name = \"mine\"").replace("field_bits = 8", "field_bits = 7");
    let t = write(&dir, "mine.toml", &table);
    let p = write(&dir, "profiles.toml", "[profile.sat]\nbandwidth_mbps = 20\nrtt_ms = 600\n");
    let o = explore(&["cost", "architectures/cifar10.toml", "--protocol", &t, "--profiles", &p, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["protocol"], "mine");
    assert_eq!(v["protocol_source"], t.as_str());
    // 7-bit field elements: DReLU = (8 * 7 + 19) l = 75 l.
    assert_eq!(v["layers"][1]["bits_by_protocol"]["drelu"], 65_536 * 75 * 64u64);
    assert_eq!(v["estimates"][2]["profile"], "sat");
    let o = explore(&["cost", "architectures/cifar10.toml", "--conv-masking", "tensor", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["conv_masking"], "tensor");
}

#[test]
fn help_explains_every_flag() {
    let h = stdout(&explore(&["cost", "--help"]));
    for flag in ["--plan", "--format", "--protocol", "--conv-masking", "--profiles", "--out"] {
        assert!(h.contains(flag), "{flag} missing from: {h}");
    }
    let h = stdout(&explore(&["--help"]));
    assert!(h.contains("cost") && h.contains("protocol"));
}

#[test]
fn bad_architecture_files_give_one_line_and_exit_2() {
    let dir = scratch("arch");
    let cases: Vec<(&str, String, &str)> = vec![
        ("syntax", format!("{HEAD}[[layers]\n"), "line 4"),
        ("top-key", format!("colour = 1\n{HEAD}{CONV}"), "line 1, column 1: unknown field `colour`"),
        ("input-key", format!("{HEAD}colour = 1\n{CONV}"), "line 4, column 1: unknown field `colour`, expected `shape`"),
        ("layer-key", format!("{HEAD}{CONV}kernal = 3\n"), "layer \"conv1\": unknown field `kernal`"),
        ("op", format!("{HEAD}[[layers]]\nop = \"lstm\"\nkernel = 2\n"), "layer \"lstm1\": key \"op\": unknown variant `lstm`"),
        ("missing-op", format!("{HEAD}[[layers]]\nname = \"a\"\n"), "layer \"a\": missing key \"op\""),
        ("missing-key", format!("{HEAD}[[layers]]\nop = \"conv\"\nkernel = 3\n"), "layer \"conv1\": conv needs key \"out_channels\""),
        (
            "wrong-key-for-op",
            format!("{HEAD}{CONV}[[layers]]\nname = \"relu1\"\nop = \"relu\"\nkernel = 3\n"),
            "key \"kernel\" does not apply to op \"relu\"",
        ),
        (
            "wrong-type",
            format!("{HEAD}[[layers]]\nop = \"conv\"\nout_channels = \"four\"\nkernel = 3\n"),
            "layer \"conv1\": key \"out_channels\": invalid type",
        ),
        ("duplicate", format!("{HEAD}{CONV}{CONV}"), "layer \"conv1\": duplicate name"),
        ("dangling", format!("{HEAD}{CONV}[[layers]]\nop = \"add\"\ninputs = [\"conv1\", \"conv9\"]\n"), "no layer named \"conv9\""),
        (
            "cycle",
            format!(
                "{HEAD}[[layers]]\nname = \"a\"\nop = \"relu\"\ninputs = [\"b\"]\n[[layers]]\nname = \"b\"\nop = \"relu\"\ninputs = [\"a\"]\n"
            ),
            "cycle",
        ),
        (
            "kernel",
            format!("{HEAD}[[layers]]\nname = \"big\"\nop = \"conv\"\nout_channels = 4\nkernel = 11\n"),
            "layer \"big\": kernel 11x11 is larger than its input 8x8",
        ),
        (
            "flat",
            format!("{HEAD}{CONV}[[layers]]\nname = \"fc1\"\nop = \"linear\"\nout_features = 10\n"),
            "layer \"fc1\": linear needs a flat input, got [4, 8, 8]; add a flatten layer",
        ),
        ("add-shapes", format!("{HEAD}{CONV}[[layers]]\nop = \"add\"\ninputs = [\"conv1\", \"input\"]\n"), "add needs inputs of one shape"),
        ("input-shape", "name = \"t\"\n[input]\nshape = [0, 8, 8]\n[[layers]]\nop = \"relu\"\n".to_string(), "[input] shape"),
        ("no-layers", HEAD.to_string(), "no [[layers]]"),
        (
            "zero-stride",
            format!("{HEAD}[[layers]]\nop = \"conv\"\nout_channels = 4\nkernel = 3\nstride = 0\n"),
            "key \"stride\" must be at least 1",
        ),
        (
            "batchnorm-placement",
            format!("{HEAD}{CONV}{RELU}[[layers]]\nname = \"bn\"\nop = \"batchnorm\"\n"),
            "layer \"bn\": batchnorm must directly follow a conv or linear layer",
        ),
        (
            "unused",
            format!("{HEAD}{CONV}[[layers]]\nname = \"r\"\nop = \"relu\"\ninputs = [\"input\"]\n"),
            "layer \"conv1\": its output is never used",
        ),
    ];
    for (name, text, fragment) in &cases {
        let f = write(&dir, &format!("{name}.toml"), text);
        expect_error(&["cost", &f], &f, fragment);
    }
    expect_error(&["cost", "no/such/arch.toml"], "no/such/arch.toml", "cannot read");
}

#[test]
fn bad_plan_files_give_one_line_and_exit_2() {
    let dir = scratch("plan");
    let arch = write(
        &dir,
        "arch.toml",
        &format!(
            "{HEAD}{CONV}{RELU}[[layers]]\nop = \"flatten\"\n[[layers]]\nname = \"fc\"\nop = \"linear\"\nout_features = 2\n[[layers]]\nname = \"relu2\"\nop = \"relu\"\n"
        ),
    );
    let cases: Vec<(&str, &str, &str)> = vec![
        ("unknown-layer", "[relu.relu9]\ngroup = \"channel\"\n", "[relu.relu9]: "),
        ("not-relu", "[relu.conv1]\ngroup = \"channel\"\n", "layer \"conv1\" is a conv layer, not relu"),
        ("group", "[relu.relu1]\ngroup = \"tiles\"\n", "unknown variant `tiles`"),
        ("patch-too-big", "[relu.relu1]\ngroup = \"patch\"\npatch = 16\n", "patch 16x16 is larger than the 8x8 map"),
        ("patch-missing", "[relu.relu1]\ngroup = \"patch\"\n", "group \"patch\" needs key \"patch\""),
        ("noise", "[relu.relu1]\ngroup = \"channel\"\nnoise = 2.0\n", "key \"noise\" must be in [0, 1)"),
        ("partial", "[relu.relu1]\ngroup = \"partial\"\npartial = 1.5\n", "key \"partial\" must be in [0, 1]"),
        ("unknown-key", "[relu.relu1]\ngroup = \"channel\"\npatchsize = 3\n", "unknown field `patchsize`"),
        ("key-for-other-group", "[relu.relu1]\ngroup = \"identity\"\npatch = 3\n", "key \"patch\" does not apply to group \"identity\""),
        ("flat-channel", "[relu.relu2]\ngroup = \"channel\"\n", "needs a [C, H, W] input, got [2]"),
        ("too-many-clusters", "[relu.relu1]\ngroup = \"clusters\"\nwindow = 2\nclusters = 5\n", "more than the 2x2 window's 4 activations"),
        ("weights-without-learned", "[relu.relu1]\ngroup = \"channel\"\nweights = \"secret\"\n", "applies only to decision = \"learned\""),
    ];
    for (name, body, fragment) in &cases {
        let f = write(&dir, &format!("{name}.toml"), &format!("name = \"{name}\"\n{body}"));
        expect_error(&["cost", &arch, "--plan", &f], &f, fragment);
    }
    let f = write(&dir, "other-arch.toml", "name = \"x\"\narchitecture = \"svhn\"\n");
    expect_error(&["cost", &arch, "--plan", &f], &f, "plan is for \"svhn\"");
    let bad_protocol = write(&dir, "proto.toml", "name = \"x\"\n");
    expect_error(&["cost", &arch, "--protocol", &bad_protocol], &bad_protocol, "missing field");
}

#[test]
fn simulate_json_has_the_documented_fields() {
    let messages = scratch("simulate-messages").join("messages.csv");
    let o = explore(&[
        "simulate",
        "architectures/svhn.toml",
        "--plan",
        "architectures/plans/svhn/uniform-32x32.toml",
        "--samples",
        "2",
        "--format",
        "json",
        "--messages",
        messages.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for l in v["layers"].as_array().unwrap() {
        assert_eq!(l["measured"], l["predicted"], "{}", l["name"]);
        assert!(l["max_error_lsb"].is_u64());
        assert!(l["seconds"].as_f64().unwrap() >= 0.0);
        assert!(l["predicted_seconds"].is_null(), "no [compute] section in the built-in table");
    }
    assert_eq!(v["total"]["measured"]["rounds"], 26);
    assert_eq!(v["total"]["agreement"], 1.0);
    assert!(v["total"]["seconds_per_image"].as_f64().unwrap() > 0.0);
    assert_eq!(v["total"]["samples"], 2);
    assert_eq!(v["total"]["transcript"].as_str().unwrap().len(), 16);
    // The message rows add up to each layer's measured bits, per sender, and span
    // the network's rounds and depth.
    let mut r = csv::Reader::from_path(&messages).unwrap();
    assert_eq!(r.headers().unwrap(), vec!["layer", "round", "depth", "from", "to", "element", "protocol", "count", "bits"]);
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let num = |row: &csv::StringRecord, i: usize| row[i].parse::<u64>().unwrap();
    for l in v["layers"].as_array().unwrap() {
        let mut by_party = [0u64; 3];
        for row in rows.iter().filter(|row| row[0] == *l["name"].as_str().unwrap()) {
            by_party[["P0", "P1", "P2"].iter().position(|p| *p == &row[3]).unwrap()] += num(row, 8);
            let per_element = match &row[5] {
                "field" => 8,
                "ring" | "odd" => 64,
                other => panic!("element {other}"),
            };
            assert_eq!(num(row, 8), num(row, 7) * per_element, "{row:?}");
        }
        assert_eq!(serde_json::json!(by_party), l["measured"]["bits_by_party"], "{}", l["name"]);
    }
    assert_eq!(rows.iter().map(|row| num(row, 1)).max(), Some(26));
    assert_eq!(rows.iter().map(|row| num(row, 2)).max(), v["total"]["measured"]["rounds_depth"].as_u64());
    let f = "architectures/plans/cifar10/uniform-32x32.toml";
    expect_error(&["simulate", "architectures/svhn.toml", "--plan", f], f, "plan is for \"cifar10-minionn\"");
    // Checked before the run, not after it.
    let nowhere = messages.with_file_name("no-such-dir").join("m.csv");
    let nowhere = nowhere.to_str().unwrap();
    expect_error(&["simulate", "architectures/svhn.toml", "--messages", nowhere], nowhere, "cannot write");
}

#[test]
fn max_pooling_is_priced_by_securenn_and_refused_by_tables_without_it() {
    // LeNet (SecureNN's Network C): 18.930 MB, 92 rounds, two Maxpool layers of 27 rounds.
    let o = explore(&["cost", "architectures/lenet_mnist.toml", "--format", "json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["total"]["bytes"].as_u64(), v["total"]["rounds"].as_u64()), (Some(2_366_190 * 8), Some(92)));
    let pool1 = &v["layers"][1];
    assert_eq!((pool1["op"].as_str(), pool1["rounds"].as_u64()), (Some("maxpool"), Some(27)));
    // 2,880 windows of 4 values: 3 steps of 93 l each.
    assert_eq!(pool1["bits"].as_u64(), Some(2880 * 3 * 93 * 64));
    // Delphi's table has no Maxpool price: one line naming the table, layer and op.
    let o = explore(&["cost", "architectures/lenet_mnist.toml", "--protocol", "delphi"]);
    let err = String::from_utf8(o.stderr).unwrap();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: protocol \"delphi\" (built-in): layer \"pool1\": maxpool is not priced"), "{err}");
    // Compare leaves those tables out, says so, and prices the rest.
    let o = explore(&["compare", "architectures/lenet_mnist.toml", "--format", "csv"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.lines().nth(1).unwrap().starts_with("securenn,"), "{out}");
    let err = String::from_utf8(o.stderr).unwrap();
    for t in ["falcon", "crypten-ttp", "delphi"] {
        assert!(err.contains(&format!("left out: protocol \"{t}\"")), "{err}");
    }
    let o = explore(&["compare", "architectures/lenet_mnist.toml", "--protocols", "delphi"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn batch_prices_per_batch_and_per_image() {
    let o = explore(&["cost", "architectures/lenet_mnist.toml", "--batch", "128"]);
    assert!(o.status.success());
    let out = stdout(&o);
    assert!(out.contains("a batch of 128 images per inference"), "{out}");
    assert!(out.contains("per image in the batch: 12.095 MB (63.9% of one image alone, 18.930 MB)"), "{out}");
    let o = explore(&["cost", "architectures/lenet_mnist.toml", "--batch", "128", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((v["batch"].as_u64(), v["total"]["rounds"].as_u64()), (Some(128), Some(92)));
    let o = explore(&["compare", "architectures/lenet_mnist.toml", "--batch", "128", "--protocols", "securenn", "--format", "json"]);
    let c: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c[0]["online_bytes"], v["total"]["bytes"]);
    for bad in ["0", "1025", "x"] {
        let o = explore(&["cost", "architectures/lenet_mnist.toml", "--batch", bad]);
        assert_eq!(o.status.code(), Some(2), "--batch {bad}");
    }
}

#[test]
fn compare_lists_protocols_and_securenn_equals_cost() {
    let plan = "architectures/plans/cifar10/uniform-32x32.toml";
    let o = explore(&["compare", "architectures/cifar10.toml", "--plan", plan, "--format", "json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["protocol"].as_str().unwrap()).collect();
    assert_eq!(names, ["securenn", "falcon", "crypten-ttp", "delphi"]);
    for r in rows.as_array().unwrap() {
        assert!(r["online_bytes"].as_u64().unwrap() > 0 && r["total_bytes"].as_u64().unwrap() >= r["online_bytes"].as_u64().unwrap());
        let profiles: Vec<&str> = r["timings"].as_array().unwrap().iter().map(|t| t["profile"].as_str().unwrap()).collect();
        assert_eq!(profiles, ["lan", "wan"]);
        assert!(r["bytes_saved_percent"].as_f64().unwrap() > 40.0);
    }
    let cost: serde_json::Value =
        serde_json::from_slice(&explore(&["cost", "architectures/cifar10.toml", "--plan", plan, "--format", "json"]).stdout).unwrap();
    assert_eq!(rows[0]["online_bytes"], cost["total"]["bytes"]);
    assert_eq!(rows[0]["rounds"], cost["total"]["rounds"]);
    assert_eq!(rows[0]["timings"][1]["online_seconds"], cost["estimates"][1]["seconds"]);
    assert!(rows[2]["offline_bytes"].as_u64().unwrap() > 0, "the dealer sends offline");
    assert!(rows[3]["offline_bytes"].as_u64().unwrap() > rows[3]["online_bytes"].as_u64().unwrap(), "Delphi garbles offline");
    expect_error(&["compare", "architectures/cifar10.toml", "--protocols", "nosuch"], "nosuch", "cannot read");
}

#[test]
fn calibrate_writes_a_table_whose_estimates_include_computation() {
    let dir = scratch("calibrate");
    let table = dir.join("securenn-here.toml").display().to_string();
    let o = explore(&["calibrate", "--repeats", "1", "-o", &table]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = |protocol: Option<&str>| -> serde_json::Value {
        let mut args = vec!["cost", "architectures/svhn.toml", "--format", "json"];
        if let Some(p) = protocol {
            args.extend(["--protocol", p]);
        }
        serde_json::from_slice(&explore(&args).stdout).unwrap()
    };
    let (plain, timed) = (json(None), json(Some(&table)));
    let compute = timed["total"]["compute_seconds"].as_f64().unwrap();
    assert!(compute > 0.0 && plain["total"]["compute_seconds"] == 0.0);
    let lan = |v: &serde_json::Value| v["estimates"][0]["seconds"].as_f64().unwrap();
    assert!((lan(&timed) - lan(&plain) - compute).abs() < 1e-9);
    assert_eq!(plain["total"]["bits"], timed["total"]["bits"]);
    assert!(stdout(&explore(&["cost", "architectures/svhn.toml", "--protocol", &table])).contains("of local computation"));
    expect_error(&["calibrate", "--protocol", &table], &table, "[compute]: the table already has one");
}

#[test]
fn work_that_cannot_fit_or_cannot_be_right_is_refused_before_it_starts() {
    let dir = scratch("refusals");
    let huge = write(
        &dir,
        "huge.toml",
        "name = \"huge\"\n[input]\nshape = [3, 32, 32]\n[[layers]]\nname = \"conv1\"\nop = \"conv\"\nout_channels = 1000000000\nkernel = 3\npadding = 1\n[[layers]]\nname = \"relu1\"\nop = \"relu\"\n",
    );
    // Memory estimated from the graph, over the limit: the estimate and the key to change.
    expect_error(&["simulate", &huge], &huge, "over the limit of");
    expect_error(&["simulate", "architectures/svhn.toml", "--max-memory", "10M"], "architectures/svhn.toml", "--max-memory");
    expect_error(&["train", &huge, "--data", dir.to_str().unwrap()], &huge, "memory");
    // A grid counted before it is expanded: 16^8 x 9^8 points.
    let arch = Path::new(env!("CARGO_MANIFEST_DIR")).join("architectures/cifar10.toml");
    let axes = "per_layer = true\ngroup = \"patch\"\npatch = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]\nnoise = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n";
    let grid =
        write(&dir, "grid.toml", &format!("name = \"g\"\narchitecture = {:?}\n[[grid]]\nname = \"g\"\n{axes}", arch.display().to_string()));
    expect_error(&["sweep", &grid, "--out-dir", dir.to_str().unwrap()], &grid, "[[grid]]: 1283918464548864 design points");
    // Fractional bits the ring cannot hold for this network, with the bound.
    expect_error(&["simulate", "architectures/cifar10.toml", "--frac-bits", "24"], "architectures/cifar10.toml", "use at most 15");
    // An empty dataset.
    for split in ["train/a", "test/a"] {
        std::fs::create_dir_all(dir.join("empty").join(split)).unwrap();
    }
    let empty = dir.join("empty");
    expect_error(&["train", "architectures/fashion_mnist.toml", "--data", empty.to_str().unwrap()], empty.to_str().unwrap(), "no images");
    // A clustering window larger than the map, before any file is read.
    let args = ["cluster", "architectures/fashion_mnist.toml", "--weights", "none.safetensors", "--layers", "relu1", "--clusters", "4"];
    let mut wide = args.to_vec();
    wide.extend(["--window", "64", "--out", "c.safetensors"]);
    expect_error(&wide, "architectures/fashion_mnist.toml", "--window 64x64: larger than layer \"relu1\"'s 28x28 map");
    // A negative size names the key and the value.
    let neg = write(
        &dir,
        "neg.toml",
        "name = \"n\"\n[input]\nshape = [3, 8, 8]\n[[layers]]\nname = \"conv1\"\nop = \"conv\"\nout_channels = 4\nkernel = -3\n",
    );
    expect_error(&["cost", &neg], &neg, "key \"kernel\": expected a size: a whole number such as 3, or [height, width], got -3");
}

#[test]
fn fold_writes_the_checkpoint_the_network_without_batchnorm_runs_the_same() {
    use explore::graph::{Network, sharing::Planned};
    use explore::infer::{checkpoint, model::Params};
    use explore::spec::{ArchSpec, Op, PlanSpec};
    let dir = scratch("fold");
    let bn_net = Network::build(&ArchSpec::load(Path::new("architectures/cifar10_bn.toml")).unwrap()).unwrap();
    let original = PlanSpec::original();
    let planned = Planned::new(&bn_net, &original).unwrap();
    // Batchnorm that does something: scale, shift and statistics per channel.
    let mut params = Params::random(&planned, 3);
    for (_, layer) in bn_net.layers().filter(|(_, l)| l.op == Some(Op::BatchNorm)) {
        let p = params.layers.get_mut(&layer.name).unwrap();
        let c = p.weight.len();
        p.weight.iter_mut().enumerate().for_each(|(i, w)| *w = 0.5 + (i % 3) as f32 * 0.5);
        p.bias.iter_mut().enumerate().for_each(|(i, b)| *b = 0.1 * (i % 5) as f32 - 0.2);
        p.buffers[..c].iter_mut().enumerate().for_each(|(i, m)| *m = 0.05 * (i % 4) as f32);
        p.buffers[c..].iter_mut().enumerate().for_each(|(i, v)| *v = 0.5 + 0.25 * (i % 6) as f32);
    }
    let bn = dir.join("bn.safetensors");
    checkpoint::save(&bn, &planned, &params, Default::default()).unwrap();
    let folded = dir.join("folded.safetensors");
    let o = explore(&[
        "fold",
        "architectures/cifar10_bn.toml",
        "--weights",
        bn.to_str().unwrap(),
        "--into",
        "architectures/cifar10.toml",
        "-o",
        folded.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout(&o).contains("folded 7 batchnorm layers"), "{}", stdout(&o));
    // The same secure inference: every message, payloads included.
    let transcript = |arch: &str, ckpt: &Path| {
        let o = explore(&["simulate", arch, "--weights", ckpt.to_str().unwrap(), "--samples", "2", "--format", "json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["total"]["transcript"].as_str().unwrap().to_string(), v["total"]["measured"]["bits"].as_u64().unwrap())
    };
    assert_eq!(transcript("architectures/cifar10_bn.toml", &bn), transcript("architectures/cifar10.toml", &folded));
    // The unfolded checkpoint does not load into the network without batchnorm.
    let o = explore(&["simulate", "architectures/cifar10.toml", "--weights", bn.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
}

/// Without --weights, `simulate` runs the network's shipped trained original on its
/// shipped test images: real weights, real images, no dataset needed.
#[test]
fn simulate_runs_the_shipped_trained_network_on_shipped_images_by_default() {
    let json = |args: &[&str]| -> serde_json::Value {
        let o = explore(args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let v = json(&["simulate", "architectures/cifar10.toml", "--samples", "10", "--format", "json"]);
    assert_eq!(v["weights"], "checkpoint models/cifar10-original.safetensors", "{v}");
    assert_eq!(v["inputs"], "test images of models/cifar10-test-sample", "{v}");
    // The secure class is the float one on every image, and most are right.
    assert_eq!(v["total"]["agreement"], 1.0, "{v}");
    assert!(v["total"]["accuracy"].as_f64().unwrap() >= 0.6, "{v}");
    // Under a plan: the original's weights, the shared decisions at their defaults.
    let plan = "architectures/plans/cifar10/uniform-32x32.toml";
    let v = json(&["simulate", "architectures/cifar10.toml", "--plan", plan, "--samples", "2", "--format", "json"]);
    assert!(v["weights"].as_str().unwrap().ends_with("(the original's, shared decisions at their defaults)"), "{v}");
    // Asked for, or where no model is shipped: seeded random weights on generated inputs.
    let v = json(&["simulate", "architectures/cifar10.toml", "--random-weights", "--format", "json"]);
    assert_eq!(v["weights"], "random (He-normal, seed 1)", "{v}");
    assert!(v["inputs"].as_str().unwrap().starts_with("generated"), "{v}");
    let copy = scratch("arch-copy").join("cifar10.toml");
    std::fs::copy("architectures/cifar10.toml", &copy).unwrap();
    let v = json(&["simulate", copy.to_str().unwrap(), "--format", "json"]);
    assert!(v["weights"].as_str().unwrap().starts_with("random"), "{v}");
}
