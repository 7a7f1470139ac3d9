#!/usr/bin/env bash
# Runs every test edgewatch has, from a fresh clone: installs what is missing,
# fetches the model, builds the small YOLO/classifier test models, checks
# formatting and lints, then runs unit and integration tests (real mosquitto,
# real models, real files).
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh
./engines/fetch-models.sh
./engines/make-test-models.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked
