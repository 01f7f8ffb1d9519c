//! Three parties over loopback TCP (`explore run3pc`, `explore party`): what crosses
//! the sockets equals the simulator's counts, the outputs equal the simulator's, and a
//! party that dies, hangs or runs other settings ends the others with an error.

mod common;
use common::explore_json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn run3pc(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["run3pc"];
    all.extend_from_slice(args);
    all.extend(["--random-weights", "--format", "json"]);
    explore_json(&all)
}

fn check_against_simulator(v: &serde_json::Value) {
    let parties = v["parties"].as_array().unwrap();
    assert_eq!(parties.len(), 3);
    for p in parties {
        assert_eq!(p["matches_simulator"], true, "{p}");
        assert_eq!(p["payload_bytes_sent"].as_u64().unwrap() * 8, p["simulated_bits_sent"].as_u64().unwrap(), "{p}");
        // run3pc runs TLS unless told not to: records carry payload, setup and framing.
        let carried = ["payload_bytes_sent", "setup_bytes_sent", "framing_bytes_sent"].map(|k| p[k].as_u64().unwrap()).iter().sum::<u64>();
        assert!(p["tls_bytes_sent"].as_u64().unwrap() > carried, "{p}");
    }
    // P2 holds no share: it deals nothing and opens nothing.
    assert_eq!(parties[2]["setup_bytes_sent"], 0);
    assert_eq!(v["rounds"], v["simulated_rounds"]);
    assert_eq!(v["agreement"], 1.0, "opened outputs differ from the simulator's");
}

#[test]
fn lenet_over_tcp_sends_what_the_simulator_counts() {
    // LeNet has max pooling; the 2x2 plan shares decisions after it.
    for plan in ["original", "uniform-2x2"] {
        let plan = format!("architectures/plans/lenet_mnist/{plan}.toml");
        let v = run3pc(&["architectures/lenet_mnist.toml", "--plan", &plan, "--samples", "2"]);
        check_against_simulator(&v);
        // Both plans' rounds as the cost model counts them.
        let cost = explore_json(&["cost", "architectures/lenet_mnist.toml", "--plan", &plan, "--format", "json"]);
        assert_eq!(v["simulated_rounds"], cost["total"]["rounds"], "{plan}");
        let bits: u64 = v["parties"].as_array().unwrap().iter().map(|p| p["simulated_bits_sent"].as_u64().unwrap()).sum();
        assert_eq!(bits, 2 * cost["total"]["bits"].as_u64().unwrap(), "{plan}: two images");
    }
}

#[test]
fn learned_decisions_and_secret_noise_run_as_the_simulator_does() {
    // Learned decision weights, public (P0 sends them to P1 at setup) and secret (dealt
    // as shares), and a secret noise mask.
    for plan in ["adaptive-256", "fc-noise"] {
        let plan = format!("architectures/plans/svhn/{plan}.toml");
        let v = run3pc(&["architectures/svhn.toml", "--plan", &plan, "--samples", "1"]);
        check_against_simulator(&v);
    }
}

fn party(id: u8, peers: &str, extra: &[&str]) -> Child {
    party_with(id, peers, extra, None)
}

/// A party, with `EXPLORE_FAULT` set to `fault` if given.
fn party_with(id: u8, peers: &str, extra: &[&str], fault: Option<&str>) -> Child {
    let id = id.to_string();
    let mut args = vec!["party", "--id", &id, "--peers", peers, "architectures/cifar10.toml"];
    args.extend(["--random-weights", "--samples", "200", "--timeout", "5"]);
    args.extend_from_slice(extra);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_explore"));
    if let Some(f) = fault {
        cmd.env("EXPLORE_FAULT", f);
    }
    cmd.args(&args).current_dir(env!("CARGO_MANIFEST_DIR")).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn free_peers() -> String {
    let addrs: Vec<String> =
        (0..3).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()).collect();
    addrs.join(",")
}

/// Waits for a party to end (at most `limit`) and returns its exit code and last line.
fn ended(child: Child, limit: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    let mut child = child;
    while child.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < limit, "a party still runs after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    (out.status.code(), text.lines().last().unwrap_or("").to_string())
}

fn signal(child: &Child, sig: &str) {
    assert!(Command::new("kill").args([sig, &child.id().to_string()]).status().unwrap().success());
}

#[test]
fn a_killed_party_ends_the_others_with_an_error_naming_it() {
    let peers = free_peers();
    let (p0, p1, mut p2) = (party(0, &peers, &[]), party(1, &peers, &[]), party(2, &peers, &[]));
    // Connected and computing by then (a party waits at most 5 s for the others).
    std::thread::sleep(Duration::from_millis(2500));
    assert!(p2.try_wait().unwrap().is_none(), "200 images take longer than this");
    p2.kill().unwrap();
    p2.wait().unwrap();
    let lines: Vec<String> = [p0, p1]
        .into_iter()
        .map(|p| {
            let (code, line) = ended(p, Duration::from_secs(15));
            assert_eq!(code, Some(2), "{line}");
            assert!(line.contains("closed the connection") || line.contains("connection lost"), "{line}");
            line
        })
        .collect();
    // One of them waited on P2; the other may have waited on it and seen it stop first.
    assert!(lines.iter().any(|l| l.contains(": P2: ")), "{lines:?}");
}

#[test]
fn a_hanging_party_ends_the_others_within_the_timeout() {
    let peers = free_peers();
    let (p0, p1, mut p2) = (party(0, &peers, &[]), party(1, &peers, &[]), party(2, &peers, &[]));
    std::thread::sleep(Duration::from_millis(2500));
    signal(&p2, "-STOP");
    let stopped = Instant::now();
    for p in [p0, p1] {
        let (code, line) = ended(p, Duration::from_secs(15));
        assert_eq!(code, Some(2), "{line}");
        // Either it waited on P2 itself, or on a peer that stopped because of P2.
        assert!(line.contains("sent nothing for 5 s") || line.contains("closed the connection"), "{line}");
    }
    assert!(stopped.elapsed() < Duration::from_secs(15));
    p2.kill().unwrap();
    p2.wait().unwrap();
}

#[test]
fn a_party_with_other_settings_is_refused() {
    let peers = free_peers();
    let (p0, p1, p2) = (party(0, &peers, &[]), party(1, &peers, &["--seed", "2"]), party(2, &peers, &[]));
    let results: Vec<(Option<i32>, String)> = [p0, p1, p2].into_iter().map(|p| ended(p, Duration::from_secs(20))).collect();
    assert!(results.iter().all(|(code, _)| *code == Some(2)), "{results:?}");
    assert!(results.iter().any(|(_, line)| line.contains("P1: runs other settings")), "{results:?}");
}

#[test]
fn a_party_whose_certificate_is_not_pinned_is_refused() {
    let (ours, theirs) = (common::scratch("party-keys-ours"), common::scratch("party-keys-theirs"));
    for dir in [&ours, &theirs] {
        let o = common::explore(&["keygen", dir.to_str().unwrap()]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let (ours, theirs) = (ours.to_str().unwrap(), theirs.to_str().unwrap());
    let peers = free_peers();
    let (p0, p1, p2) = (party(0, &peers, &["--tls", ours]), party(1, &peers, &["--tls", ours]), party(2, &peers, &["--tls", theirs]));
    let results: Vec<(Option<i32>, String)> = [p0, p1, p2].into_iter().map(|p| ended(p, Duration::from_secs(20))).collect();
    assert!(results.iter().all(|(code, _)| *code == Some(2)), "{results:?}");
    // P0 and P1 never let the stranger in; it cannot complete a handshake with them.
    assert!(
        results[0].1.contains("P2: did not connect within 5 s; refused:") && results[0].1.contains("TLS handshake failed"),
        "{results:?}"
    );
    assert!(results[2].1.contains("refused the TLS handshake"), "{results:?}");
}

#[test]
fn a_huge_or_truncated_frame_ends_every_party_within_the_timeout() {
    for (fault, said) in [("huge:40", "sent a frame of 1099511627776 bytes"), ("truncate:40", "sent a truncated frame")] {
        let peers = free_peers();
        let start = Instant::now();
        let (p0, p1, p2) = (party(0, &peers, &[]), party_with(1, &peers, &[], Some(fault)), party(2, &peers, &[]));
        let results: Vec<(Option<i32>, String)> = [p0, p1, p2].into_iter().map(|p| ended(p, Duration::from_secs(20))).collect();
        assert!(results.iter().all(|(code, _)| *code == Some(2)), "{fault}: {results:?}");
        // The receiver of the broken frame names P1 and what it sent; the others follow.
        assert!(results.iter().any(|(_, line)| line.contains(&format!(": P1: {said}"))), "{fault}: {results:?}");
        assert!(start.elapsed() < Duration::from_secs(20), "{fault}");
    }
}

#[test]
fn batches_over_tcp_send_what_the_batched_cost_model_counts() {
    let v = run3pc(&["architectures/lenet_mnist.toml", "--samples", "4", "--batch", "2"]);
    check_against_simulator(&v);
    let cost = explore_json(&["cost", "architectures/lenet_mnist.toml", "--batch", "2", "--format", "json"]);
    let bits: u64 = v["parties"].as_array().unwrap().iter().map(|p| p["simulated_bits_sent"].as_u64().unwrap()).sum();
    assert_eq!(bits, 2 * cost["total"]["bits"].as_u64().unwrap(), "two batches of two");
    assert_eq!(v["rounds"], cost["total"]["rounds"]);
}

#[test]
fn a_timeout_that_is_not_a_positive_number_is_refused() {
    for t in ["0", "nan", "1e30"] {
        let o = common::explore(&[
            "party",
            "--id",
            "0",
            "--peers",
            "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3",
            "architectures/lenet_mnist.toml",
            "--timeout",
            t,
        ]);
        assert_eq!(o.status.code(), Some(2), "{t}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("must be more than 0"), "{t}");
    }
}

#[test]
fn an_emulated_thin_link_takes_what_the_time_model_with_parties_apart_says() {
    // 20 Mbit/s and 2 ms per round: SecureML's network spends most of its time
    // sending, so the two estimates (one shared link, parties apart) are far apart and
    // the measurement has to pick one. Setup is not slowed (the model leaves it out).
    let dir = common::scratch("party-thin");
    let profiles = dir.join("profiles.toml");
    std::fs::write(&profiles, "[profile.thin]\nbandwidth_mbps = 20\nrtt_ms = 2\n").unwrap();
    let v = run3pc(&["architectures/secureml_mnist.toml", "--samples", "1", "--emulate", "thin", "--profiles", profiles.to_str().unwrap()]);
    check_against_simulator(&v);
    let cost = explore_json(&["cost", "architectures/secureml_mnist.toml", "--profiles", profiles.to_str().unwrap(), "--format", "json"]);
    let thin = cost["estimates"].as_array().unwrap().iter().find(|e| e["profile"] == "thin").unwrap();
    let (apart, one_link) = (thin["seconds_apart"].as_f64().unwrap(), thin["seconds"].as_f64().unwrap());
    assert_eq!(v["model_apart_seconds_per_image"].as_f64().unwrap(), apart);
    assert!(one_link > 1.5 * apart, "{one_link} {apart}");
    let measured = v["seconds_per_image"].as_f64().unwrap();
    // Sleeping threads, not computation, set this time: a loaded machine adds little.
    assert!((0.9 * apart..1.3 * apart).contains(&measured), "measured {measured} s, parties apart {apart} s, one link {one_link} s");
}
