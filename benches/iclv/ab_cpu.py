"""CPU-time A/B of the ICLV hot path (README section rbe.iclv): medians of
11 LL + gradient evaluations (``time.process_time`` at 1 engine thread, and
wall time at 1 and 2 threads) and one exact Hessian + scores, for the
origin-shaped and the drug-choice-sized models; one JSON line.

    python benches/iclv/ab_cpu.py after
    PYTHONPATH=/path/to/other/python python benches/iclv/ab_cpu.py before

(run the two alternately to compare two builds in one session).
"""
import sys, time, json, numpy as np, rbe
from rbe.iclv.simulate import origin_study, drug_choice_study
def med(f, n, clock):
    f(); f()
    ts = []
    for _ in range(n):
        t0 = clock(); f(); ts.append(clock() - t0)
    return round(1e3 * float(np.median(ts)), 1)
out = {"which": sys.argv[1]}
for key, mk in (("origin", origin_study), ("drug", drug_choice_study)):
    m = mk().model()
    x = np.random.default_rng(0).normal(0, 0.1, len(m.free_names)) + m._vector(None)
    rbe.set_num_threads(1)
    out[f"{key}_llg_1cpu"] = med(lambda: m.loglik_and_gradient(x), 11, time.process_time)
    out[f"{key}_llg_1wall"] = med(lambda: m.loglik_and_gradient(x), 11, time.perf_counter)
    rbe.set_num_threads(2)
    out[f"{key}_llg_2wall"] = med(lambda: m.loglik_and_gradient(x), 11, time.perf_counter)
    rbe.set_num_threads(1)
    t0 = time.process_time(); m.hessian_and_scores(x); out[f"{key}_hess_1cpu"] = round(1e3 * (time.process_time() - t0))
    out[f"{key}_ll"] = m.loglik_and_gradient(x)[0]
print(json.dumps(out))
