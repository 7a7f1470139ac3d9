#!/usr/bin/env bash
# Reading side by side: edgewatch (`detect` with [read], the default backend)
# against RapidOCR 1.4.4's whole pipeline (det + angle classifier + rec) on
# the same images, one after the other: rendered 1080p scenes, labels on a
# busy scene and printed pages with known strings, in four typefaces
# (DejaVu Sans, Sans Bold, Serif, Mono; fonts-dejavu-core), scored by
# read_compare.py (lines read exactly and 1 − CER, whitespace aside; speed;
# peak RSS). Prints Markdown tables (and writes them to $OUT if set).
#
#   benches/peer/bench-read.sh            # 3 images per font and set
#   N=1 benches/peer/bench-read.sh        # the reduced form CI runs
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
n=${N:-3}
data=$root/target/bench-read
pylib=$root/target/peer-pylib
out=${OUT:-}

./engines/fetch-models.sh >/dev/null
./engines/fetch-onnxruntime.sh >/dev/null
if ! PYTHONPATH="$pylib" python3 -c "import rapidocr_onnxruntime" 2>/dev/null; then
  echo "installing rapidocr-onnxruntime==1.4.4 into $pylib ..." >&2
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$pylib" rapidocr-onnxruntime==1.4.4 onnxruntime==1.32.0 \
    opencv-python==5.0.0.93 numpy==2.4.6
fi
cargo build --release --locked --quiet --bin edgewatch
cargo build --release --locked --quiet -p edgewatch-samples --bin make-samples
bin=$root/target/release/edgewatch
rm -rf "$data"
mkdir -p "$data"
cat >"$data/read.toml" <<EOF
[model]
path = "$root/engines/ppocr-det-v4.onnx"
[read]
path = "$root/engines/ppocr-rec-v4.onnx"
EOF

fonts=(DejaVuSans DejaVuSans-Bold DejaVuSerif DejaVuSansMono)
# set name, then make-samples' size, lines and kind
sets=(
  "1080p:1920 1080 8 26 44 lines"
  "labels:1920 1080 6 22 32 busy"
  "pages:1240 1754 0 18 24 page"
)
report=""
for s in "${sets[@]}"; do
  name=${s%%:*}
  read -r w h lines lo hi kind <<<"${s#*:}"
  dir=$data/$name
  mkdir -p "$dir"
  : >"$dir/truth.jsonl"
  seed=7000
  for f in "${fonts[@]}"; do
    SAMPLES_SEED=$seed SAMPLES_FONT=/usr/share/fonts/truetype/dejavu/$f.ttf \
      target/release/make-samples "$dir/$f" "$n" "$w" "$h" "$lines" "$lo" "$hi" "$kind" >>"$dir/truth.jsonl"
    seed=$((seed + 100))
  done
  mapfile -t images < <(python3 -c 'import json,sys; [print(json.loads(l)["file"]) for l in open(sys.argv[1])]' "$dir/truth.jsonl")
  t0=$(date +%s.%N)
  /usr/bin/time -f %M -o "$dir/ew.rss" "$bin" detect --config "$data/read.toml" "${images[@]}" >"$dir/ew.jsonl" 2>"$dir/ew.log"
  t1=$(date +%s.%N)
  PYTHONPATH="$pylib" python3 benches/peer/rapidocr_read.py "${images[@]}" >"$dir/peer.jsonl" 2>"$dir/peer.log"
  t2=$(date +%s.%N)
  table=$(python3 benches/peer/read_compare.py "$dir/truth.jsonl" "$dir/ew.jsonl" "$(cat "$dir/ew.rss")" \
    "$(python3 -c "print($t1 - $t0)")" "$dir/peer.jsonl" "$(python3 -c "print($t2 - $t1)")" "$name")
  echo "$table"
  report+="$table"$'\n'
done
echo "backend: $(grep -m1 -o 'backend.*' "$data/1080p/ew.log" || true)"
if [[ -n "$out" ]]; then
  printf '%s\n' "$report" >"$out"
fi
