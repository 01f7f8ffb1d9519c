#!/usr/bin/env bash
# Three parties over loopback TCP against the simulator, on CIFAR-10's original and
# per-channel 32x32 plans (random weights, generated inputs):
#   1. bytes per party and direction, rounds and outputs equal to the simulator's;
#   2. the network transport's overhead over the in-process simulator (plain TCP and
#      TLS, no emulation): each run3pc call runs the simulator on the same images
#      after the parties end, so both times come from the same call; median of 3;
#   3. emulated LAN and WAN conditions against the time model's estimates (`cost`'s
#      seconds_apart and seconds).
# Usage: benches/run3pc.sh [SAMPLES]   (default 4 images per loopback run)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exe=target/release/explore
samples=${1:-4}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores"
for plan in original uniform-32x32; do
  args=(architectures/cifar10.toml --plan "architectures/plans/cifar10/$plan.toml" --random-weights --format json)
  for mode in no-tls tls; do
    for i in 1 2 3; do
      extra=()
      [ "$mode" = no-tls ] && extra=(--no-tls)
      "$exe" run3pc "${args[@]}" --samples "$samples" "${extra[@]}" > "$out/$plan-$mode-$i.json"
    done
  done
  for profile in lan wan; do
    "$exe" run3pc "${args[@]}" --samples 1 --emulate "$profile" > "$out/$plan-$profile.json"
  done
  python3 - "$out" "$plan" <<'EOF'
import json, statistics, sys
out, plan = sys.argv[1], sys.argv[2]
load = lambda name: json.load(open(f"{out}/{plan}-{name}.json"))
runs = {m: [load(f"{m}-{i}") for i in (1, 2, 3)] for m in ("no-tls", "tls")}
first = runs["no-tls"][0]
ok = all(p["matches_simulator"] for rs in runs.values() for r in rs for p in r["parties"])
ok &= all(r["rounds"] == r["simulated_rounds"] and r["agreement"] == 1.0 for rs in runs.values() for r in rs)
print(f"\n{plan}: {first['rounds']} rounds (simulator {first['simulated_rounds']}), bytes and outputs equal the simulator's: {ok}")
for p in first["parties"]:
    print(f"  P{p['id']}: {p['payload_bytes_sent']} payload bytes sent = simulated {p['simulated_bits_sent'] // 8}, received {p['payload_bytes_received']}")
for m, rs in runs.items():
    net = [r["seconds_per_image"] for r in rs]
    sim = [r["simulator_seconds_per_image"] for r in rs]
    ratio = statistics.median(n / s for n, s in zip(net, sim))
    extra = ""
    if m == "tls":
        payload = sum(p["payload_bytes_sent"] + p["setup_bytes_sent"] + p["framing_bytes_sent"] for p in rs[0]["parties"])
        tls = sum(p["tls_bytes_sent"] for p in rs[0]["parties"])
        extra = f"; TLS records {tls} bytes for {payload} bytes carried ({100 * (tls / payload - 1):.2f}% more)"
    print(f"  loopback {m}: network {[round(x, 3) for x in net]} s/image, simulator {[round(x, 3) for x in sim]}; median ratio {ratio:.2f}{extra}")
for prof in ("lan", "wan"):
    r = load(prof)
    w, a, m, l = r["seconds_per_image"], r["model_apart_seconds_per_image"], r["model_seconds_per_image"], r["link_model_seconds_per_image"]
    c = r["simulator_seconds_per_image"]
    print(f"  {prof} emulated: {w:.3f} s/image; time model, parties apart {a:.3f} s ({100 * (w / a - 1):+.1f}%), one link {m:.3f} s ({100 * (w / m - 1):+.1f}%); "
          f"each link and step apart {l:.3f} s ({100 * (w / l - 1):+.1f}%); simulator compute {c:.3f} s ({100 * c / w:.0f}% of the wall time)")
EOF
done
