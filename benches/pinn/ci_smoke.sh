#!/usr/bin/env bash
# CI smoke run of rbe.pinn: `rbe pinn <problem> --quick` on every problem (seconds each) and a
# quick `rbe bench pinn`; checks the summaries, figures and the bench table exist. $1: output folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="$1"
mkdir -p "$out"
python - "$out" <<'PY'
import json, math, sys
from rbe.pinn.cli import main
out = sys.argv[1]
for name in ("poisson1d", "poisson2d", "poisson3d", "helmholtz2d", "diffusion1d"):
    rc = main([name, "--quick", "--no-progress", "--out", out])
    s = json.load(open(f"{out}/{name}_seed0.json"))
    assert rc == 0 and math.isfinite(s["error"]) and s["stopped"] == "done", s
PY
for f in poisson1d poisson2d poisson3d helmholtz2d diffusion1d; do
  test -s "$out/${f}_seed0_solution.png"
  test -s "$out/${f}_seed0_loss.png"
done
if python -c "import rbe.pinn.bench" 2>/dev/null; then
  python -m rbe.pinn.bench --quick --out "$out/bench.json"
  test -s "$out/bench.json"
fi
