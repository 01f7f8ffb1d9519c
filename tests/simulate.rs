//! The simulator against the cost model and the plaintext references, for every
//! shipped network under every shipped plan.

use explore::app::limits::Limits;
use explore::app::simulate::simulate_files;
use explore::simulate::{Options, SimReport, Weights};
use explore::spec::protocol::{ConvMasking, ProtocolTable};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every shipped network with a folder of plans.
const NETWORKS: [&str; 7] = ["cifar10", "svhn", "fashion_mnist", "secureml_mnist", "minionn_mnist", "lenet_mnist", "resnet18_cifar"];

/// Simulates with as many fractional bits as fit, up to `opts.frac` (ResNet-18's
/// random weights leave room for 12).
fn sim(arch: &str, plan: Option<&str>, opts: Options) -> SimReport {
    let opts = Options { fit_frac: true, ..opts };
    let plan = plan.map(|p| root().join(p));
    simulate_files(
        &root().join(format!("architectures/{arch}.toml")),
        plan.as_deref(),
        Weights::Random,
        None,
        &ProtocolTable::securenn(),
        &opts,
        &Limits::default(),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn measured_rounds_and_bits_equal_the_cost_model_under_every_shipped_plan() {
    let mut runs = 0;
    for arch in NETWORKS {
        let dir = root().join("architectures/plans").join(arch);
        let mut plans: Vec<PathBuf> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
        plans.sort();
        for plan in plans {
            let r = sim(arch, Some(plan.to_str().unwrap()), Options::default());
            for l in &r.layers {
                assert_eq!(l.measured, l.predicted, "{}: layer {}", plan.display(), l.name);
            }
            // Class agreement is not asserted here: with random weights the logits lie
            // close together, and a shared decision within the truncation error of
            // zero may flip (see README); trained networks are checked in tests/train.rs.
            runs += 1;
        }
    }
    assert_eq!(runs, 31);
}

#[test]
fn cifar10_original_and_per_channel_plan_take_86_rounds() {
    for plan in [None, Some("architectures/plans/cifar10/uniform-32x32.toml")] {
        let r = sim("cifar10", plan, Options { samples: 2, ..Options::default() });
        assert_eq!(r.total.measured.rounds, 86);
        assert_eq!(r.total.measured.rounds_depth, 71);
        assert_eq!(r.total.measured, r.total.predicted);
    }
}

#[test]
fn tensor_masking_is_measured_as_priced() {
    let r = sim("svhn", None, Options { masking: Some(ConvMasking::Tensor), ..Options::default() });
    for l in &r.layers {
        assert_eq!(l.measured, l.predicted, "layer {}", l.name);
    }
    // conv1 opens the 3x32x32 input, not its 841 x 48 im2col matrix.
    assert_eq!(r.layers[0].measured.bits, (2 * 3072 + 2 * 48 * 32 + 32 * 841) * 64);
}

#[test]
fn outputs_track_plaintext_fixed_point_and_classes_agree() {
    // Regular ReLU: errors come from +-1 lsb truncations, grown by later layers;
    // decisions only differ where a value lies within that error of zero.
    for arch in ["fashion_mnist", "svhn", "cifar10"] {
        let r = sim(arch, None, Options { samples: 2, ..Options::default() });
        // The bound of each layer, propagated from one lsb per truncation.
        let net =
            explore::graph::Network::build(&explore::spec::ArchSpec::load(&root().join(format!("architectures/{arch}.toml"))).unwrap())
                .unwrap();
        let original = explore::spec::PlanSpec::original();
        let planned = explore::graph::sharing::Planned::new(&net, &original).unwrap();
        let params = explore::infer::model::Params::random(&planned, 1).folded(&net);
        let bounds = explore::simulate::error_bounds(&planned, &params, 13);
        for (l, b) in r.layers.iter().zip(&bounds) {
            let b = b.expect("regular ReLU keeps every bound");
            assert!(l.max_error_lsb <= b, "{arch}, layer {}: {} lsb over the bound {b}", l.name, l.max_error_lsb);
        }
    }
    let r = sim("fashion_mnist", None, Options { samples: 4, ..Options::default() });
    assert_eq!(r.layers[0].max_error_lsb.min(1), r.layers[0].max_error_lsb, "conv1: one truncation, at most 1 lsb");
    assert_eq!(r.total.agreement, 1.0);
    assert_eq!(r.total.agreement_fixed, 1.0);
}

#[test]
fn same_seed_same_report_figures_and_transcript_on_any_thread_count() {
    let on = |threads: usize, seed: u64| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| sim("svhn", Some("architectures/plans/svhn/fc-noise.toml"), Options { samples: 3, seed, ..Options::default() }))
    };
    let (a, b) = (on(1, 1), on(2, 1));
    let strip = |r: &SimReport| r.layers.iter().map(|l| (l.measured, l.max_error_lsb)).collect::<Vec<_>>();
    assert_eq!(strip(&a), strip(&b));
    assert_eq!(a.total.transcript, b.total.transcript);
    assert_eq!(a.total.transcript.len(), 16);
    assert_ne!(on(2, 2).total.transcript, a.total.transcript, "another seed, another transcript");
}

#[test]
fn layer_times_add_up_within_the_secure_time_and_meet_the_compute_model() {
    // Each layer is timed inside the timed secure run, so their sum cannot exceed it.
    let r = sim("svhn", None, Options { samples: 2, ..Options::default() });
    let sum: f64 = r.layers.iter().map(|l| l.seconds).sum();
    assert!(sum > 0.0 && sum <= r.total.secure_seconds_per_image, "{sum} against {}", r.total.secure_seconds_per_image);
    for l in r.layers.iter().filter(|l| l.op == "relu" || l.op == "conv") {
        assert!(l.seconds > 0.0, "layer {}", l.name);
    }
    // Without a [compute] section there is no predicted time; with one, each layer's
    // is the cost model's compute term.
    assert!(r.layers.iter().all(|l| l.predicted_seconds.is_none()) && r.total.predicted_seconds_per_image.is_none());
    let mut table = ProtocolTable::securenn();
    table.compute = Some(explore::spec::protocol::Compute {
        ns_per_mac: 1.0,
        ns_per_element: 3.0,
        ns_per_drelu: 500.0,
        ns_per_mul: 20.0,
        ns_per_truncate: 1.0,
    });
    let arch = root().join("architectures/svhn.toml");
    let timed = simulate_files(
        &arch,
        None,
        Weights::Random,
        None,
        &table,
        &Options::default(),
        &Limits::default(),
        &indicatif::ProgressBar::hidden(),
    )
    .unwrap();
    let priced = explore::cost::price(
        &explore::graph::sharing::Planned::new(
            &explore::graph::Network::build(&explore::spec::ArchSpec::load(&arch).unwrap()).unwrap(),
            &explore::spec::PlanSpec::original(),
        )
        .unwrap(),
        &table,
        None,
        &[],
    )
    .unwrap();
    for (l, c) in timed.layers.iter().zip(&priced.layers) {
        assert_eq!(l.predicted_seconds, Some(c.compute_seconds), "layer {}", l.name);
    }
    assert!((timed.total.predicted_seconds_per_image.unwrap() - priced.total.compute_seconds).abs() < 1e-12);
    assert!(explore::app::simulate::text(&timed).contains("pred ms"));
}

/// Every shared layer of a run: no score outside its truncation bound, and every
/// flipped decision explained by a fixed-point score within that bound of zero.
fn assert_decisions_explained(what: &str, r: &SimReport) -> u64 {
    let mut flips = 0;
    for l in &r.layers {
        if let Some(d) = &l.decisions {
            assert_eq!(d.beyond_bound, 0, "{what}, layer {}: a score outside the bound: {d:?}", l.name);
            assert_eq!(d.unexplained_flips, 0, "{what}, layer {}: a flip far from zero: {d:?}", l.name);
            assert!(d.groups > 0 && d.max_score_error_lsb <= d.max_bound_lsb, "{what}, layer {}: {d:?}", l.name);
            flips += d.flips;
        }
    }
    flips
}

#[test]
fn secure_decisions_equal_fixed_point_up_to_truncation_for_every_decision_kind() {
    // Every shipped plan: centre, learned (public and secret, shared across channels),
    // noise (public and secret masks), clusters, patches, partial layers, per-channel
    // tile sides (the searched plans).
    let mut shared_runs = 0;
    for arch in NETWORKS {
        let dir = root().join("architectures/plans").join(arch);
        let mut plans: Vec<PathBuf> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
        plans.sort();
        for plan in plans {
            let r = sim(arch, Some(plan.to_str().unwrap()), Options { samples: 2, ..Options::default() });
            assert_decisions_explained(&plan.display().to_string(), &r);
            shared_runs += usize::from(r.layers.iter().any(|l| l.decisions.is_some()));
        }
    }
    assert_eq!(
        shared_runs, 23,
        "plans with a shared layer (not the seven originals, nor shafran-partial: identity and partial layers share nothing)"
    );
    // The mean decision (only LeNet's shipped plan uses it) on patches and channels.
    let dir = std::env::temp_dir().join(format!("explore-decisions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, relu) in [
        ("mean-patch", "group = \"patch\"\npatch = 3\ndecision = \"mean\""),
        ("mean-channel", "group = \"channel\"\ndecision = \"mean\""),
        ("center-patch", "group = \"patch\"\npatch = 2\ndecision = \"center\""),
    ] {
        let plan = dir.join(format!("{name}.toml"));
        std::fs::write(&plan, format!("name = \"{name}\"\narchitecture = \"svhn\"\n\n[relu.relu1]\n{relu}\n")).unwrap();
        let r = sim("svhn", Some(plan.to_str().unwrap()), Options { samples: 4, ..Options::default() });
        assert!(r.layers.iter().any(|l| l.decisions.is_some()), "{name}");
        assert_decisions_explained(name, &r);
    }
}

/// Two runs of one seed (two design points of a sweep) never share protocol
/// randomness: every message digest differs, while the inputs, weights, counts and
/// fixed-point references are the same; the same run twice repeats itself exactly.
#[test]
fn two_runs_of_one_seed_draw_different_masks_and_agree_on_everything_else() {
    let opts = |run| Options { samples: 2, run, ..Options::default() };
    let (a, b, again) = (sim("fashion_mnist", None, opts(1)), sim("fashion_mnist", None, opts(2)), sim("fashion_mnist", None, opts(1)));
    assert_ne!(a.total.transcript, b.total.transcript);
    assert_eq!(a.total.transcript, again.total.transcript);
    assert_eq!(a.total.measured, b.total.measured);
    assert_eq!(a.inputs, b.inputs);
    assert_eq!(a.weights, b.weights);
    assert_eq!(a.total.agreement_fixed, b.total.agreement_fixed);
}

#[test]
fn a_batch_computes_each_image_as_alone_and_sends_what_cost_batch_predicts() {
    use explore::graph::Network;
    use explore::graph::sharing::Planned;
    use explore::infer::{plain::Fixed, run, run_batch};
    use explore::spec::{ArchSpec, PlanSpec};
    // Plans without noise at inference (whose flips are drawn per batch): patches,
    // channels, clusters, centre, secret learned weights, partial layers, max pooling
    // and residual additions.
    for (arch, plan) in [
        ("cifar10", "uniform-4x4"),
        ("cifar10", "clusters-center-256"),
        ("cifar10", "shafran-partial"),
        ("svhn", "adaptive-256"),
        ("lenet_mnist", "uniform-2x2"),
        ("resnet18_cifar", "stage1-2x2"),
    ] {
        let network = Network::build(&ArchSpec::load(&root().join(format!("architectures/{arch}.toml"))).unwrap()).unwrap();
        let plan_spec = PlanSpec::load(&root().join(format!("architectures/plans/{arch}/{plan}.toml"))).unwrap();
        let planned = Planned::new(&network, &plan_spec).unwrap();
        let params = explore::infer::model::Params::random(&planned, 3).folded(&network);
        let len = network.input_dims().iter().product();
        let images: Vec<Vec<f32>> = (0..3).map(|i| explore::simulate::generated_input(len, 5, i)).collect();
        let alone: Vec<u64> = images.iter().flat_map(|x| run(&mut Fixed::new(12), &planned, &params, x, 0).pop().unwrap()).collect();
        let batched = run_batch(&mut Fixed::new(12), &planned, &params, &images.concat(), 3, 0).pop().unwrap();
        assert_eq!(batched, alone, "{arch}/{plan}");
        // Secure, two batches of 3: every layer's counts are those `cost --batch 3` predicts.
        let r = sim(arch, Some(&format!("architectures/plans/{arch}/{plan}.toml")), Options { samples: 6, batch: 3, ..Options::default() });
        assert_eq!(r.batch, 3);
        for l in &r.layers {
            assert_eq!(l.measured, l.predicted, "{arch}/{plan}: layer {}", l.name);
        }
        assert_decisions_explained(&format!("{arch}/{plan} batched"), &r);
    }
}
