#!/usr/bin/env bash
# An hour of mixed load on one daemon, as a roadside box sees it: one RTSP
# camera (H.264 from x264, 2 fps), one replay with events and motion
# (looping), one folder taking an image a second; the broker restarted
# twice. Samples VmRSS, VmHWM, open fds and threads every 30 s, and checks
# at the end that every file in done/ was delivered (distinct message ids
# for the folder equal files done).
#
#   benches/soak-mixed.sh [SECONDS] [BINARY]    (default 3600, target/release/edgewatch)
#
# Needs mosquitto, mosquitto-clients and the RTSP test server's packages
# and netpbm (deploy/install-deps.sh --tests). Prints a Markdown section; the samples
# are left in $SOAK_DIR (default: a new temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3600}
bin=${2:-target/release/edgewatch}
dir=${SOAK_DIR:-$(mktemp -d)}
mkdir -p "$dir"/{inbox,frames,stage,broker}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mq=$(port) rtsp=$(port) tele=$(port)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Frames: rendered text scenes (the sample renderer).
cargo run -q -p edgewatch-samples --bin make-samples -- "$dir/frames" 6 1280 720 6 24 40 >/dev/null
i=0
for f in "$dir"/frames/sample-*.jpg; do
  # The RTSP server reads PNG (netpbm converts).
  jpegtopnm -quiet "$f" | pnmtopng -quiet > "$dir/frames/f$(printf %03d $i).png"
  rm "$f"
  i=$((i + 1))
done
"$bin" record --images "$dir"/frames/f00{0,1,2}.png --format rgb3 --fps 2 --out "$dir/replay.ewraw" >/dev/null

cat > "$dir/broker/mosquitto.conf" <<EOF
listener $mq 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/broker/
EOF
broker() { mosquitto -c "$dir/broker/mosquitto.conf" > "$dir/broker/log" 2>&1 & bpid=$!; sleep 0.5; }
broker
/usr/bin/python3 tests/rtsp/serve.py --port "$rtsp" --frames "$dir/frames/f%03d.png" --fps 2 --key-int 4 > "$dir/rtsp.log" 2>&1 &
pids+=($!)
sleep 2
mosquitto_sub -h 127.0.0.1 -p "$mq" -c -i soak-sub -q 1 -t 'edgewatch/soak/#' -F '%t %p' > "$dir/messages" 2>/dev/null &
pids+=($!)

cat > "$dir/edgewatch.toml" <<EOF
device = "soak"
[model]
path = "$PWD/engines/ppocr-det-v4.onnx"
[[source]]
name = "inbox"
kind = "folder"
path = "inbox"
settle_ms = 200
[[source]]
name = "ip"
kind = "rtsp"
url = "rtsp://127.0.0.1:$rtsp/cam"
publish = ["frames"]
fps = 2
[[source]]
name = "replay"
kind = "replay"
path = "replay.ewraw"
loop = true
motion = true
[mqtt]
url = "mqtt://127.0.0.1:$mq"
outbox = "outbox"
[telemetry]
listen = "127.0.0.1:$tele"
EOF
"$bin" run --config "$dir/edgewatch.toml" > "$dir/daemon.log" 2>&1 &
dpid=$!
pids+=($dpid)
for _ in $(seq 1 120); do grep -q 'edgewatch ready' "$dir/daemon.log" && break; sleep 0.5; done

# The folder: one image a second, each a new file (a new id).
(
  n=0
  while true; do
    src="$dir/frames/f00$((n % 6)).png"
    cp "$src" "$dir/stage/img$n.png"
    mv "$dir/stage/img$n.png" "$dir/inbox/img$n.png"
    n=$((n + 1))
    sleep 1
  done
) &
feeder=$!
pids+=($feeder)

status() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$dpid/status"; }
echo "t_s,rss_kib,hwm_kib,fds,threads" > "$dir/samples.csv"
start=$(date +%s)
restarted=0
while true; do
  now=$(( $(date +%s) - start ))
  (( now >= secs )) && break
  kill -0 "$dpid" 2>/dev/null || { echo "error: the daemon died; see $dir/daemon.log" >&2; exit 1; }
  echo "$now,$(status VmRSS),$(status VmHWM),$(ls /proc/$dpid/fd | wc -l),$(status Threads)" >> "$dir/samples.csv"
  # The broker restarted twice, at a third and at two thirds.
  if (( restarted < 2 && now >= (restarted + 1) * secs / 3 )); then
    kill "$bpid"; wait "$bpid" 2>/dev/null || true
    sleep 5
    broker
    restarted=$((restarted + 1))
  fi
  sleep 30
done
kill "$feeder"
# Drain: the inbox empties and the outbox reaches 0.
for _ in $(seq 1 300); do
  left=$(find "$dir/inbox" -maxdepth 2 -type f -name 'img*' | wc -l)
  depth=$(curl -s "127.0.0.1:$tele/metrics" | awk '$1 == "edgewatch_outbox_messages" {print $2}')
  [[ "$left" == 0 && "$depth" == 0 ]] && break
  sleep 1
done
sleep 3
done_files=$(find "$dir/done" -type f -name 'img*' | wc -l)
delivered=$(grep '^edgewatch/soak/inbox/detections ' "$dir/messages" | sed 's/^[^ ]* //' \
  | python3 -c 'import json,sys; print(len({json.loads(l)["id"] for l in sys.stdin}))')
failed=$(find "$dir/failed" -type f 2>/dev/null | wc -l)
ip=$(grep -c '^edgewatch/soak/ip/detections ' "$dir/messages" || true)
events=$(grep -c '^edgewatch/soak/replay/events ' "$dir/messages" || true)
kill -TERM "$dpid"; wait "$dpid" || true

python3 - "$dir/samples.csv" "$secs" "$done_files" "$delivered" "$failed" "$ip" "$events" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
secs = int(sys.argv[2])
def at(t):
    r = min(rows, key=lambda r: abs(int(r["t_s"]) - t))
    return r
early, late = at(min(600, secs // 6)), rows[-1]
print(f"### Mixed load, {secs // 60} min (RTSP 2 fps + looping replay with events and motion + folder 1 img/s; broker restarted twice)\n")
print("| | at {} min | at {} min |".format(int(early["t_s"]) // 60, int(late["t_s"]) // 60))
print("|---|---|---|")
print(f"| VmRSS | {int(early['rss_kib'])/1024:.0f} MiB | {int(late['rss_kib'])/1024:.0f} MiB |")
print(f"| VmHWM | {int(early['hwm_kib'])/1024:.0f} MiB | {int(late['hwm_kib'])/1024:.0f} MiB |")
print(f"| open fds | {early['fds']} | {late['fds']} |")
print(f"| threads | {early['threads']} | {late['threads']} |")
print(f"\nfolder: {sys.argv[3]} files done, {sys.argv[4]} distinct messages delivered, {sys.argv[5]} failed; RTSP messages {sys.argv[6]}, replay events {sys.argv[7]}")
PY
if [[ "$done_files" != "$delivered" ]]; then
  echo "error: $done_files files done but $delivered delivered" >&2
  exit 1
fi
