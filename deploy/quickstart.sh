#!/usr/bin/env bash
# edgewatch quick start, on the default (CPU) setup:
#   installs what is missing (mosquitto, the model, ONNX Runtime's library),
#   builds, starts a broker
#   on 127.0.0.1:1883 (or uses the one already there), runs the daemon on
#   ./run/inbox, drops sample 1080p images into it and prints the detection
#   messages as a subscriber receives them.
# Usage: ./deploy/quickstart.sh [--keep]   (--keep leaves the daemon running)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
keep=false
[[ "${1:-}" == "--keep" ]] && keep=true
samples=${SAMPLES:-3}

say() { printf '\n== %s\n' "$*"; }

command -v cargo >/dev/null || { echo "error: cargo not found; install Rust from your distribution or rustup.rs" >&2; exit 1; }
say "system packages"
./deploy/install-deps.sh
say "model"
./engines/fetch-models.sh
say "ONNX Runtime (about twice tract's speed; backend = \"auto\" takes it, tract without it)"
./engines/fetch-onnxruntime.sh || echo "warning: ONNX Runtime could not be fetched; the daemon serves on tract (pure Rust)" >&2
say "build (release; the first build takes several minutes)"
cargo build --release --locked -p edgewatch --bin edgewatch -p edgewatch-samples --bin make-samples

mkdir -p run
pids=()
cleanup() {
  # Newest first: the daemon stops before the broker it talks to.
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill "${pids[$i]}" 2>/dev/null && wait "${pids[$i]}" 2>/dev/null || true; done
}
$keep || trap cleanup EXIT

port_open() { (exec 3<>/dev/tcp/127.0.0.1/1883) 2>/dev/null; }
say "broker"
if port_open; then
  echo "using the MQTT broker already listening on 127.0.0.1:1883"
else
  printf 'listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n' > run/mosquitto.conf
  mosquitto_bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  "$mosquitto_bin" -c run/mosquitto.conf > run/mosquitto.log 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do port_open && break; sleep 0.1; done
  port_open || { echo "error: mosquitto did not start; see run/mosquitto.log" >&2; exit 1; }
  echo "started mosquitto on 127.0.0.1:1883 (log: run/mosquitto.log)"
fi

say "subscriber: mosquitto_sub -t 'edgewatch/#'"
mosquitto_sub -h 127.0.0.1 -p 1883 -t 'edgewatch/quickstart/+/detections' -C "$samples" -W 300 > run/messages.jsonl &
sub=$!

say "daemon: target/release/edgewatch run --config deploy/quickstart.toml"
./target/release/edgewatch check-config deploy/quickstart.toml
./target/release/edgewatch run --config deploy/quickstart.toml 2> >(tee run/edgewatch.log >&2) &
daemon=$!
pids+=($daemon)
for _ in $(seq 100); do grep -q "edgewatch ready" run/edgewatch.log 2>/dev/null && break; sleep 0.1; done

say "dropping $samples sample images into run/inbox"
./target/release/make-samples run/inbox "$samples" > run/truth.jsonl

if wait "$sub"; then
  say "detection messages received ($samples):"
  python3 - run/messages.jsonl <<'PY'
import json, sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    print("%s  %s  %d boxes  %.0f ms" % (m["id"], m["image"]["path"], len(m["detections"]), m["timing_ms"]["total"]))
    for d in m["detections"][:3]:
        print("    %s %.2f box=%s" % (d["label"], d["score"], d["box"]))
PY
  echo "(full messages in run/messages.jsonl; processed images in run/done/)"
else
  echo "error: no messages within 300 s; see run/edgewatch.log" >&2
  exit 1
fi

if $keep; then
  echo "daemon left running (pid $daemon); drop images into run/inbox; stop it with: kill $daemon"
else
  say "stopping (SIGTERM)"
fi
