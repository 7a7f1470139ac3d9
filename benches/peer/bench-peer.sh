#!/usr/bin/env bash
# Side-by-side benchmark: edgewatch vs RapidOCR 1.4.4 and 3.10 (ONNX Runtime +
# OpenCV) on the same images, alternating runs: seeded images with text at
# known places (1080p scenes, A4 pages, dense 4K, 4K labels on a busy scene)
# and real scans nobody here made (engines/fetch-real-images.sh, sha256-
# pinned; no line ground truth, so speed and boxes only). Writes
# BENCHMARKS.md (or $OUT). Takes about 40 minutes on 2 cores.
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
pylib3=$root/target/peer3-pylib

./engines/fetch-models.sh >/dev/null
./engines/fetch-onnxruntime.sh >/dev/null
./engines/fetch-real-images.sh >/dev/null
[[ -f engines/ppocr-det-v4-int8.onnx ]] || ./engines/make-int8.sh
if ! PYTHONPATH="$pylib" python3 -c "import rapidocr_onnxruntime" 2>/dev/null; then
  echo "installing rapidocr-onnxruntime==1.4.4 into $pylib ..."
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$pylib" rapidocr-onnxruntime==1.4.4 onnxruntime==1.32.0 \
    opencv-python==5.0.0.93 numpy==2.4.6
fi

if ! PYTHONPATH="$pylib3" python3 -c "import rapidocr" 2>/dev/null; then
  echo "installing rapidocr==3.10.0 into $pylib3 ..."
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$pylib3" rapidocr==3.10.0 onnxruntime==1.32.0 \
    opencv-python-headless==5.0.0.93 numpy==2.4.6
fi
# edgewatch on the PP-OCRv6 small detector RapidOCR 3.10 ships, with ONNX
# Runtime beside it as engines/ has it.
v6="$pylib3/rapidocr/models/PP-OCRv6_det_small.onnx"
v6_sha=090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f
[[ $(sha256sum "$v6" | cut -d' ' -f1) == "$v6_sha" ]] || { echo "error: $v6 is not the pinned PP-OCRv6 file" >&2; exit 1; }
mkdir -p "$data/v6"
cp "$v6" "$data/v6/ppocr-det-v6-small.onnx"
ln -sfn "$root/engines/onnxruntime" "$data/v6/onnxruntime"

echo "building edgewatch (release) ..."
cargo build --release --locked --quiet -p edgewatch --bin edgewatch -p edgewatch-samples --bin make-samples

mkdir -p "$data"
# Seeded: the same images on every run and every machine. Seeds from 5000
# (the tests use 1000+), lines and pages in DejaVu Serif (the tests' font is
# DejaVu Sans), shaped as issue 31's table.
# make_set NAME COUNT ARGS...: (re)generates a set when its count changed.
make_set() {
  local name=$1 count=$2
  shift 2
  if [[ ! -s "$data/$name.jsonl" || $(wc -l <"$data/$name.jsonl") -ne $count ]]; then
    rm -rf "${data:?}/$name"
    target/release/make-samples "$data/$name" "$count" "$@" >"$data/$name.jsonl"
  fi
}
serif=/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf
SAMPLES_SEED=5000 SAMPLES_FONT=$serif make_set 1080p-v2 "$n1080" 1920 1080 25 18 48
SAMPLES_SEED=5000 SAMPLES_FONT=$serif make_set pages-v2 "$npage" 1240 1754 0 16 30 page
SAMPLES_SEED=5000 make_set 4k-v2 "$n4k" 3840 2160 40 12 20
SAMPLES_SEED=5000 make_set labels-v2 "$nlab" 3840 2160 3 12 20 busy
for f in "$root"/engines/test/real/*; do
  printf '{"file": "%s", "truth": null}\n' "$f"
done >"$data/real.jsonl"

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
cat >"$data/int8.toml" <<EOF
# The INT8 (QDQ) detector from engines/make-int8.sh, otherwise as shipped.
[model]
path = "$root/engines/ppocr-det-v4-int8.onnx"
EOF
cat >"$data/v6.toml" <<EOF
# As shipped, on RapidOCR 3.10's PP-OCRv6 small detector.
[model]
path = "$data/v6/ppocr-det-v6-small.onnx"
EOF
cat >"$data/guided.toml" <<EOF
# Coarse to fine: the whole frame at 6/min_text_px, full resolution only
# where small text is.
[model]
path = "$model"
[tiling]
mode = "guided"
EOF

python3 benches/peer/compare.py \
  --bin target/release/edgewatch \
  --peer "RapidOCR 1.4.4 (PP-OCRv4):$pylib:rapidocr_det.py" \
  --peer "RapidOCR 3.10 (PP-OCRv6 small):$pylib3:rapidocr3_det.py" \
  --set "1080p, 25 lines of 18–48 px:$data/1080p-v2.jsonl" \
  --set "A4 pages, 1240×1754, lines of 16–30 px:$data/pages-v2.jsonl" \
  --set "4K, 40 lines of 12–20 px:$data/4k-v2.jsonl" \
  --set "4K, 3 labels of 12–20 px on a busy scene:$data/labels-v2.jsonl" \
  --set "Real scans — a 400-dpi typewriter page, a 300-dpi letter, a map as JPEG (OCRmyPDF's test data):$data/real.jsonl" \
  --runner "edgewatch, default:$data/default.toml" \
  --runner "edgewatch on tract:$data/tract.toml" \
  --runner "edgewatch, guided:$data/guided.toml" \
  --runner "edgewatch, INT8:$data/int8.toml" \
  --runner "edgewatch on PP-OCRv6 small:$data/v6.toml" \
  --rounds "$rounds" \
  --command "$(for v in N1080 NPAGE N4K NLAB CRITERION; do [[ -n ${!v:-} ]] && printf '%s=%s ' "$v" "${!v}"; done)benches/peer/bench-peer.sh $rounds" \
  --out "$out"

# The criterion guards: medians appended to the same report.
# CRITERION=engines runs only the engine table.
if [[ ${CRITERION:-1} != 0 ]]; then
  if [[ ${CRITERION:-1} != engines ]]; then
    echo "running the criterion benches ..."
    cargo bench --locked --quiet --bench pipeline -- --noplot >"$data/criterion.txt" 2>/dev/null
      { echo; python3 benches/peer/criterion_table.py "$data/criterion.txt"; } >>"$out"
  fi
  echo "running the engine benches ..."
  cargo bench --locked --quiet --bench engines -- --noplot >"$data/engines.txt" 2>/dev/null
  { echo; python3 benches/peer/engine_table.py "$data/engines.txt"; } >>"$out"
fi

# Optional: RSS over a long run (SOAK=2000 takes about 10 minutes).
if [[ ${SOAK:-0} -gt 0 ]]; then
  echo "soaking over $SOAK images ..."
  python3 benches/peer/soak.py target/release/edgewatch "$data/default.toml" "$SOAK" \
    "$data"/1080p/*.jpg >>"$out"
fi
echo "wrote $out"
