#!/usr/bin/env bash
# CI smoke run of rbe.iclv: a tiny origin-shaped study (estimation, robust s.e., recovery table, saved results)
# and a tiny run of the benchmark. $1: output folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-/tmp/iclv-smoke}"
mkdir -p "$out"
python -m rbe.cli iclv --individuals 40 --tasks 4 --draws 10 --indicators-per-lv 2 --quiet --out "$out/study" > "$out/study.txt"
grep -q "Recovery (true value, estimate, robust s.e.)" "$out/study.txt"
test -s "$out/study/results.json"
python -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['converged'] and r['parameters'] == 43, r" "$out/study/run.json"
if python -c "import rbe.iclv.bench" 2>/dev/null; then
  python -m rbe.cli bench iclv --quick --no-jax --out "$out/bench" > "$out/bench.txt"
  test -s "$out/bench/bench.json"
fi
echo "iclv smoke OK"
