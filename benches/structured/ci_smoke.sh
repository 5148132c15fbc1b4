#!/usr/bin/env bash
# CI smoke run of the structured (RBE) study: tiny sizes, checks every part runs. $1: output folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
python benches/structured/rbe_study.py --quick --out "$1"
test -s "$1/results.json"
