"""Fuzzing the public API with Hypothesis: ops, shapes, dtypes, strides and
sizes near the 64-bit limits. Every case runs in a separate worker process
(restarted when it dies) under an 8 GB address-space limit, so a crash is a
test failure naming the case, not a lost run.

What must hold for every case: the call returns, or raises an ordinary
``Exception`` of the classes torch uses (never a ``PanicException``, never an
"internal error", never a dead process).

CI runs a few hundred cases; the long run is
``RBE_FUZZ_EXAMPLES=20000 python -m pytest tests/test_fuzz.py``.
"""
import json
import os
import select
import subprocess
import sys
import tempfile
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("RBE_FUZZ_EXAMPLES", "600"))
LIMIT = 8 * 1024**3
# a case may take at most this long (a huge loop the user asked for is refused or bounded, not run for hours)
TIMEOUT = 30

WORKER = textwrap.dedent(
    f"""
    import json, resource, sys, math
    resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}))
    import rbe
    import rbe.nn.functional as F
    DT = {{"float32": rbe.float32, "float64": rbe.float64, "int64": rbe.int64, "bool": rbe.bool}}

    def make(spec):
        kind, shape, dt, view = spec
        dt = DT[dt]
        if kind == "zeros":
            t = rbe.zeros(*shape, dtype=dt)
        elif kind == "ones":
            t = rbe.ones(*shape, dtype=dt)
        else:
            t = rbe.arange(0, max(1, math.prod(shape))).reshape(*shape).to(dt) if math.prod(shape) < 10**6 else rbe.zeros(*shape, dtype=dt)
        if view == "T" and t.ndim >= 2:
            t = t.transpose(0, t.ndim - 1)
        elif view == "step" and t.ndim >= 1 and t.shape[0] > 1:
            t = t[::2]
        elif view == "expand" and t.ndim >= 1:
            t = t.narrow(0, 0, min(1, t.shape[0])).expand(*([3] + list(t.shape[1:]))) if t.shape[0] >= 1 else t
        elif view == "flip" and t.ndim >= 1:
            t = t.flip(0)
        return t

    for line in sys.stdin:
        case = json.loads(line)
        try:
            args = [make(a) if isinstance(a, list) and len(a) == 4 and a[0] in ("zeros", "ones", "arange") else a for a in case["args"]]
            kw = case.get("kw", {{}})
            name = case["op"]
            if name.startswith("rbe."):
                r = eval(name)(*args, **kw)
            elif name.startswith("F."):
                r = getattr(F, name[2:])(*args, **kw)
            elif name == "getitem":
                r = args[0][tuple(args[1:])]
            elif name == "setitem":
                args[0][tuple(args[1:-1])] = args[-1]
                r = None
            else:
                r = getattr(args[0], name)(*args[1:], **kw)
            if isinstance(r, rbe.Tensor) and r.numel() < 10**6:
                r.sum() if r.dtype != rbe.bool else r.any()
            out = "ok"
        except Exception as e:
            out = "exc " + ".".join([type(e).__module__, type(e).__name__]) + " " + str(e)[:150].replace(chr(10), " ")
        except BaseException as e:
            out = "BASE " + type(e).__name__ + " " + str(e)[:150].replace(chr(10), " ")
        print(out, flush=True)
    """
)


class Worker:
    def __init__(self):
        self.p = None

    def run(self, case):
        if self.p is None or self.p.poll() is not None:
            # stderr goes to a file: a pipe nobody reads fills up with warnings and blocks the worker
            self.err = tempfile.TemporaryFile(mode="w+")
            self.p = subprocess.Popen([sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self.p.stdin.write(json.dumps(case) + "\n")
        self.p.stdin.flush()
        ready, _, _ = select.select([self.p.stdout], [], [], TIMEOUT)
        if not ready:
            self.p.kill()
            self.p.wait()
            self.p = None
            return f"HUNG for more than {TIMEOUT} s"
        line = self.p.stdout.readline()
        if not line:
            self.err.seek(0)
            err = self.err.read()[-600:]
            rc = self.p.wait()
            self.p = None
            return f"DIED rc={rc} {err}"
        return line.strip()

    def close(self):
        if self.p is not None and self.p.poll() is None:
            self.p.stdin.close()
            self.p.wait(timeout=30)


@pytest.fixture(scope="module")
def worker():
    w = Worker()
    yield w
    w.close()


BIG = [2**31, 2**32, 2**40, 2**62, 2**63 - 1, 2**63, 2**64 - 1]
sizes = st.one_of(st.integers(0, 4), st.sampled_from(BIG), st.sampled_from([-1, -2, -(2**63)]))
small_shape = st.lists(st.integers(0, 4), min_size=0, max_size=3)
dtypes = st.sampled_from(["float32", "float64", "int64", "bool"])
views = st.sampled_from(["", "T", "step", "expand", "flip"])
tensors = st.tuples(st.sampled_from(["zeros", "ones", "arange"]), small_shape, dtypes, views).map(list)
dims = st.integers(-4, 4) | st.sampled_from([2**63 - 1, -(2**63)])


def cases():
    unary = st.sampled_from(
        "exp log sin tanh sigmoid relu abs neg sqrt sum mean prod amax argmax logsumexp cumsum var std all any "
        "flatten contiguous clone nonzero tolist isnan t tril triu softmax log_softmax".split()
    )
    one = st.builds(lambda op, t, d: {"op": op, "args": [t] + ([d] if op in ("cumsum", "logsumexp", "softmax", "log_softmax") else [])}, unary, tensors, dims)
    binary = st.builds(
        lambda op, a, b: {"op": op, "args": [a, b]},
        st.sampled_from("add mul sub div matmul maximum pow eq lt logical_and atan2 remainder floor_divide dot mm bmm outer".split()),
        tensors,
        tensors,
    )
    shaped = st.builds(
        lambda op, t, ss: {"op": op, "args": [t] + ss},
        st.sampled_from(["reshape", "view", "expand", "repeat", "permute", "flip", "squeeze", "unsqueeze", "movedim"]),
        tensors,
        st.lists(sizes, min_size=0, max_size=4),
    )
    sliced = st.builds(
        lambda op, t, a, b, c: {"op": op, "args": [t, a, b, c][: {"narrow": 4, "split": 3, "chunk": 3, "select": 3, "transpose": 3, "unflatten": 3}[op]]},
        st.sampled_from(["narrow", "split", "chunk", "select", "transpose"]),
        tensors,
        dims,
        sizes,
        sizes,
    )
    creation = st.builds(
        lambda op, ss, dt: {"op": op, "args": ss, "kw": {"dtype": dt} if op != "rbe.randint" else {}},
        st.sampled_from(["rbe.zeros", "rbe.ones", "rbe.empty", "rbe.rand", "rbe.randn"]),
        st.lists(sizes, min_size=0, max_size=3),
        st.sampled_from([None, "float32", "float64"]).map(lambda d: d),
    ).map(lambda c: {**c, "kw": {}})
    random_ops = st.one_of(
        st.builds(lambda n: {"op": "rbe.randperm", "args": [n]}, sizes),
        st.builds(lambda lo, hi, ss: {"op": "rbe.randint", "args": [lo, hi, ss]}, sizes, sizes, st.lists(sizes, max_size=2)),
        st.builds(lambda a, b, n: {"op": "rbe.linspace", "args": [a, b, n]}, st.integers(-5, 5), st.integers(-5, 5), sizes),
        st.builds(lambda a, b, s: {"op": "rbe.arange", "args": [a, b, s]}, sizes, sizes, st.sampled_from([1, -1, 2**62])),
    )
    index = st.builds(lambda t, i: {"op": "getitem", "args": [t] + i}, tensors, st.lists(sizes, min_size=1, max_size=3))
    setindex = st.builds(lambda t, i, v: {"op": "setitem", "args": [t] + i + [v]}, tensors, st.lists(sizes, min_size=1, max_size=2), st.sampled_from([0.5, 1e30, float("nan"), -(2**63)]))
    nn = st.one_of(
        st.builds(lambda t, p: {"op": "F.dropout", "args": [t, p]}, tensors, st.sampled_from([0.0, 0.5, 1.0, -1.0, 2.0, float("nan")])),
        st.builds(lambda a, b: {"op": "F.cross_entropy", "args": [a, b]}, tensors, tensors),
        st.builds(lambda a, b: {"op": "F.mse_loss", "args": [a, b]}, tensors, tensors),
        st.builds(lambda t, d: {"op": "F.softmax", "args": [t, d]}, tensors, dims),
        st.builds(lambda t, p: {"op": "F.pad", "args": [t, p]}, tensors, st.lists(sizes, min_size=0, max_size=4)),
    )
    return st.one_of(one, binary, shaped, sliced, creation, random_ops, index, setindex, nn)


ALLOWED = ("rbe.errors.", "builtins.TypeError", "builtins.ValueError", "builtins.IndexError", "builtins.RuntimeError", "builtins.MemoryError", "builtins.OverflowError", "builtins.NotImplementedError", "builtins.ZeroDivisionError")


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(case=cases())
def test_no_crash_no_panic(worker, case):
    out = worker.run(case)
    assert not out.startswith(("DIED", "HUNG")), f"{case}: {out}"
    assert not out.startswith("BASE"), f"{case}: {out}"
    assert "internal error" not in out, f"{case}: {out}"
    if out.startswith("exc "):
        cls = out.split(" ", 2)[1]
        assert cls.startswith(ALLOWED), f"{case}: unexpected exception class {cls}: {out}"
