"""The reproducers of the reliability issue, each in a fresh interpreter
under an 8 GB address-space limit, so a crash or an abort is a test failure
and not a lost run. Each must end with a clear exception of the expected
class (or torch's result)."""
import subprocess
import sys
import textwrap

import pytest

LIMIT = 8 * 1024**3

# (name, code, expected exception class name or None for "runs without error")
CASES = [
    ("reshape wrapping 2^64", "rbe.ones(1).reshape(274177, 67280421310721)[1, 0].item()", "RuntimeError"),
    ("empty reshape 2^64", "rbe.zeros(0).reshape(2**32, 2**32)[10**6, 10**6].item()", "RuntimeError"),
    ("randint 2^64", "rbe.randint(0, 10, (2**32, 2**32))[10**6, 10**6].item()", "RuntimeError"),
    ("narrow 2^64-1", "rbe.ones(3).narrow(0, 1, 2**64-1).sum()", "IndexError"),
    ("expand 2^64", "rbe.zeros(1).expand(2**32, 2**32).flatten()", "RuntimeError"),
    ("expand reshape write", "a = rbe.zeros(1).expand(2**32, 2**32).reshape(2**33, 2**31); a[0, 0] = 1", "RuntimeError"),
    ("matmul of 2^40", "E = rbe.zeros(1).expand(2**40); E @ E", "MemoryError"),
    ("dot of 2^40", "E = rbe.zeros(1).expand(2**40); rbe.dot(E, E)", "MemoryError"),
    ("dropout of 2^40", "import rbe.nn.functional as F; F.dropout(rbe.zeros(1).expand(2**40))", "MemoryError"),
    ("index by 2^40", "I = rbe.zeros(1, dtype=rbe.int64).expand(2**40); rbe.zeros(5)[I]", "MemoryError"),
    ("index-assign by 2^40", "I = rbe.zeros(1, dtype=rbe.int64).expand(2**40); x = rbe.zeros(5); x[I] = 1.0", "MemoryError"),
    ("tril 2^62", "rbe.zeros(1, 1).expand(2**31, 2**31).tril()", "MemoryError"),
    ("randperm 2^40", "rbe.randperm(2**40)", "MemoryError"),
    ("randperm 2^62", "rbe.randperm(2**62)", "MemoryError"),
    ("randint 2^40", "rbe.randint(0, 10, (2**40,))", "MemoryError"),
    ("tolist 2^40", "rbe.zeros(1).expand(2**40).tolist()", "MemoryError"),
    ("equal 2^40", "E = rbe.zeros(1).expand(2**40); E.equal(E)", "MemoryError"),
    ("to float64 2^40", "rbe.zeros(1).expand(2**40).to(rbe.float64)", "MemoryError"),
    ("bernoulli 2^40", "rbe.bernoulli(rbe.zeros(1).expand(2**40))", "MemoryError"),
    ("max over dim 2^40", "rbe.zeros(1, 1).expand(2**20, 2**20).max(1)", "MemoryError"),
    ("index_add_ 2^40", "x = rbe.zeros(2**20); x.index_add_(0, rbe.zeros(1, dtype=rbe.int64).expand(2**40), rbe.zeros(1).expand(2**40))", "MemoryError"),
    ("movedim repeated", "rbe.ones(2, 3).movedim((0, 1), (0, 0))", "RuntimeError"),
    (
        "matmul under a tight address-space limit, no worker thread can start",
        "import resource\n"
        "a = rbe.ones(512, 512)\n"
        "vm = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vm + 4_000_000, vm + 4_000_000))\n"
        "for _ in range(5):\n"
        "    try:\n"
        "        c = a @ a\n"
        "    except MemoryError:\n"
        "        pass\n",
        None,
    ),
    ("softmax inf", "import math; r = rbe.softmax(rbe.tensor([math.inf, 1.0]), 0); assert all(math.isnan(v) for v in r.tolist()), r", None),
]


def _run(code):
    prog = textwrap.dedent(
        f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, ({LIMIT}, {LIMIT}))
        import rbe
        try:
            exec({code!r})
        except BaseException as e:
            print("RAISED", type(e).__module__, type(e).__name__, "|".join(c.__name__ for c in type(e).__mro__), str(e)[:200])
            sys.exit(0)
        print("NO-ERROR")
        """
    )
    return subprocess.run([sys.executable, "-c", prog], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name,code,expected", CASES, ids=[c[0] for c in CASES])
def test_reproducer(name, code, expected):
    p = _run(code)
    assert p.returncode == 0, f"{name}: the interpreter died (exit {p.returncode}): {p.stderr[-400:]}"
    line = (p.stdout.strip().splitlines() or ["<nothing>"])[-1]
    if expected is None:
        assert line == "NO-ERROR", line
        return
    assert line.startswith("RAISED"), line
    _, module, cls, mro, *_ = line.split(" ", 4) + [""]
    assert "PanicException" not in mro, line
    assert "internal error" not in line, line
    assert expected in mro.split("|"), line
