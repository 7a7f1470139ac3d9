#!/usr/bin/env bash
# Side-by-side benchmark: edgewatch vs RapidOCR (ONNX Runtime + OpenCV) on the
# same seeded images with text at known places, alternating runs: 1080p
# scenes, A4 pages, dense 4K and 4K labels on a busy scene. Writes
# BENCHMARKS.md (or $OUT). Takes about 30 minutes on 2 cores.
#
#   benches/peer/bench-peer.sh [ROUNDS]          # default 3 rounds
#   N1080=4 NPAGE=3 N4K=2 NLAB=3 CRITERION=0 OUT=/tmp/b.md benches/peer/bench-peer.sh 1
#   SOAK=2000 benches/peer/bench-peer.sh         # also RSS over 2,000 images
#
# RapidOCR and its pinned dependencies are installed into target/peer-pylib
# (no virtualenv, nothing system-wide).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
rounds=${1:-3}
n1080=${N1080:-20}
n4k=${N4K:-3}
npage=${NPAGE:-6}
nlab=${NLAB:-6}
out=${OUT:-$root/BENCHMARKS.md}
data=$root/target/bench-peer
pylib=$root/target/peer-pylib

./engines/fetch-models.sh >/dev/null
./engines/fetch-onnxruntime.sh >/dev/null
if ! PYTHONPATH="$pylib" python3 -c "import rapidocr_onnxruntime" 2>/dev/null; then
  echo "installing rapidocr-onnxruntime==1.4.4 into $pylib ..."
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$pylib" rapidocr-onnxruntime==1.4.4 onnxruntime==1.32.0 \
    opencv-python==5.0.0.93 numpy==2.4.6
fi

echo "building edgewatch (release) ..."
cargo build --release --locked --quiet -p edgewatch --bin edgewatch -p edgewatch-samples --bin make-samples

mkdir -p "$data"
# Seeded: the same images on every run and every machine.
# make_set NAME COUNT ARGS...: (re)generates a set when its count changed.
make_set() {
  local name=$1 count=$2
  shift 2
  if [[ ! -s "$data/$name.jsonl" || $(wc -l <"$data/$name.jsonl") -ne $count ]]; then
    rm -rf "${data:?}/$name"
    target/release/make-samples "$data/$name" "$count" "$@" >"$data/$name.jsonl"
  fi
}
make_set 1080p "$n1080" 1920 1080 8 18 48
make_set pages "$npage" 1240 1754 0 16 30 page
make_set 4k "$n4k" 3840 2160 40 12 20
make_set labels "$nlab" 3840 2160 3 12 20 busy

model="$root/engines/ppocr-det-v4.onnx"
cat >"$data/default.toml" <<EOF
# edgewatch as shipped: backend auto (ONNX Runtime, found beside the model,
# where the budget holds it; else tract), tiling auto, the default budget.
[model]
path = "$model"
EOF
cat >"$data/tract.toml" <<EOF
# The no-download fallback: tract, tiling auto.
[model]
path = "$model"
backend = "cpu"
EOF
cat >"$data/whole.toml" <<EOF
# Whole frame shrunk to 960 on its longest side, as PaddleOCR's det default.
[model]
path = "$model"
[tiling]
mode = "off"
EOF
cat >"$data/guided.toml" <<EOF
# Coarse to fine: the whole frame at 6/min_text_px, full resolution only
# where small text is.
[model]
path = "$model"
[tiling]
mode = "guided"
EOF
cat >"$data/ort.toml" <<EOF
# As shipped, on ONNX Runtime (engines/fetch-onnxruntime.sh, found beside the model).
[model]
path = "$model"
backend = "onnxruntime"
EOF
cat >"$data/ort-guided.toml" <<EOF
# Coarse to fine on ONNX Runtime.
[model]
path = "$model"
backend = "onnxruntime"
[tiling]
mode = "guided"
EOF

python3 benches/peer/compare.py \
  --bin target/release/edgewatch \
  --peer-path "$pylib" \
  --set "1080p, 8 lines of 18–48 px:$data/1080p.jsonl" \
  --set "A4 pages, 1240×1754, lines of 16–30 px:$data/pages.jsonl" \
  --set "4K, 40 lines of 12–20 px:$data/4k.jsonl" \
  --set "4K, 3 labels of 12–20 px on a busy scene:$data/labels.jsonl" \
  --runner "edgewatch, default:$data/default.toml" \
  --runner "edgewatch on tract, default:$data/tract.toml" \
  --runner "edgewatch, guided:$data/guided.toml" \
  --runner "edgewatch, tiling off:$data/whole.toml" \
  --runner "edgewatch on ONNX Runtime, default:$data/ort.toml" \
  --runner "edgewatch on ONNX Runtime, guided:$data/ort-guided.toml" \
  --rounds "$rounds" \
  --command "$(for v in N1080 NPAGE N4K NLAB CRITERION; do [[ -n ${!v:-} ]] && printf '%s=%s ' "$v" "${!v}"; done)benches/peer/bench-peer.sh $rounds" \
  --out "$out"

# The criterion guards: medians appended to the same report.
if [[ ${CRITERION:-1} != 0 ]]; then
  echo "running the criterion benches ..."
  cargo bench --locked --quiet --bench pipeline -- --noplot >"$data/criterion.txt" 2>/dev/null
  python3 benches/peer/criterion_table.py "$data/criterion.txt" >>"$out"
  echo "running the engine benches ..."
  cargo bench --locked --quiet --bench engines -- --noplot >"$data/engines.txt" 2>/dev/null
  python3 benches/peer/engine_table.py "$data/engines.txt" >>"$out"
fi

# Optional: RSS over a long run (SOAK=2000 takes about 10 minutes).
if [[ ${SOAK:-0} -gt 0 ]]; then
  echo "soaking over $SOAK images ..."
  python3 benches/peer/soak.py target/release/edgewatch "$data/default.toml" "$SOAK" \
    "$data"/1080p/*.jpg >>"$out"
fi
echo "wrote $out"
