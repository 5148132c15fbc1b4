#!/usr/bin/env bash
# CI smoke run of the HMM benchmark: tiny sizes, checks every part runs (no jax). $1: output folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
python -m rbe.hmm.bench --quick --out "$1"
test -s "$1/results.json"
