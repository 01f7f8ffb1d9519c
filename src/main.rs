//! The `explore` command line: parses the arguments and hands them to `app`, which
//! does the work; only `main` chooses the exit code.

use clap::{Parser, Subcommand};
use explore::app;
use std::process::ExitCode;

// Secure inference allocates and frees large share vectors layer after layer;
// mimalloc, told to keep freed memory (`allocator`), reuses it instead of faulting
// fresh pages in each time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "explore", version, about = "What ReLU sharing saves in secure inference (rounds, bandwidth, time), and what it costs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Price a network, optionally under a ReLU-sharing plan, with the analytic
    /// SecureNN cost model: ReLUs, rounds and bits per layer and party.
    Cost(app::cost::Args),
    /// Explore a design space of ReLU-sharing plans (the tool's main job): price every
    /// point, run it through the secure simulation and, with data, train it; write
    /// output/<sweep>/results.csv, pareto.csv and plots. Finished points are stored
    /// and never recomputed: an interrupted sweep resumes, a rerun is instant.
    Sweep(app::sweep::Args),
    /// Unite the stores of a sweep's shards (`explore sweep --shard I/N`, run as a
    /// Slurm job array or by hand) and write results.csv, pareto.csv and plots as an
    /// unsharded run does; lists the points no shard stored.
    Merge(app::merge::Args),
    /// Run secure inference under SecureNN, message by message: measured rounds, bits
    /// and time per layer beside the cost model's prediction, the error against
    /// plaintext fixed point, and class agreement with float.
    Simulate(app::simulate::Args),
    /// Train a network (under a ReLU-sharing plan) on a real dataset with the embedded
    /// training loop; print one line per epoch and write a safetensors checkpoint.
    Train(app::train::Args),
    /// Record activations of a trained network on training images: the binary ReLU
    /// pattern of chosen layers (for clustering) and every layer's total variation
    /// (the paper's Figure 3).
    Record(app::record::Args),
    /// Cluster a trained network's ReLU decisions into shared groups (the paper's
    /// agglomerative clustering by Hamming distance, per channel and window): writes
    /// the assignment a `clusters` plan reads, a cluster map PNG per layer, and
    /// optionally the plan itself.
    Cluster(app::cluster::Args),
    /// Find the per-channel sharing plan of least measured distortion (from trained
    /// weights) that fits budgets in MB, rounds, ReLUs or seconds under a profile: a
    /// multiple-choice knapsack over each channel's tile sides, priced exactly; writes
    /// the plan and, with --finetune-epochs, fine-tunes it.
    Search(app::search::Args),
    /// Check everything the tool claims: the cost model against the simulator for
    /// every shipped network and plan (exactly), the simulator against plaintext
    /// fixed point, and the model against the paper's Table 8. Exits 1 on any failure.
    Validate(app::validate::Args),
    /// Price a network and plan under several protocols (SecureNN, Falcon, CrypTen
    /// with a dealer, or your own tables): rounds, MB offline/online/total, estimated
    /// seconds per profile, and the plan's saving under each protocol.
    Compare(app::compare::Args),
    /// Rewrite a checkpoint of a network with batchnorm for the same network without
    /// it (each batchnorm folded into the layer before, as inference does).
    Fold(app::fold::Args),
    /// Read an ONNX model (as torch.onnx.export writes it) into an architecture TOML,
    /// and with --weights its weights into a checkpoint for simulate and train --init.
    Import(app::import::Args),
    /// Run one of the three SecureNN parties over TCP (P0 holds the model and input
    /// and deals P1 its shares; P2 helps); `explore run3pc` starts all three.
    Party(app::party::PartyArgs),
    /// Start the three parties on this machine over loopback TCP, run the inferences
    /// and report bytes per party and direction, rounds and wall time beside the
    /// simulator's counts and the time model's estimate.
    Run3pc(app::party::Run3pcArgs),
    /// Write a run's TLS certificates into a directory: a CA that signs one
    /// certificate per party (its key then dropped), and each party's private key;
    /// give party N the directory without the other parties' keys.
    Keygen(app::party::KeygenArgs),
    /// Print the built-in SecureNN protocol table, to copy and edit for --protocol.
    Protocol,
    /// Measure the simulator's local work per action on this machine and print the
    /// SecureNN table (or --protocol FILE) with a `[compute]` section: estimated
    /// seconds then add computation to rounds and bits.
    Calibrate(app::calibrate::Args),
}

fn main() -> ExitCode {
    explore::allocator::keep_freed_memory();
    let cli = Cli::parse();
    let result = app::check_env().and_then(|()| match cli.command {
        Command::Cost(a) => app::cost::run(a),
        Command::Sweep(a) => app::sweep::run(a),
        Command::Merge(a) => app::merge::run(a),
        Command::Simulate(a) => app::simulate::run(a),
        Command::Party(a) => app::party::party(a),
        Command::Run3pc(a) => app::party::run3pc(a),
        Command::Keygen(a) => app::party::keygen(a),
        Command::Train(a) => app::train::run(a),
        Command::Record(a) => app::record::run(a),
        Command::Cluster(a) => app::cluster::run(a),
        Command::Search(a) => app::search::run(a),
        Command::Validate(a) => app::validate::run(a),
        Command::Compare(a) => app::compare::run(a),
        Command::Fold(a) => app::fold::run(a),
        Command::Import(a) => app::import::run(a),
        Command::Protocol => app::protocol::run(),
        Command::Calibrate(a) => app::calibrate::run(a),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
