"""Data, parameters and draws of rbe.iclv: the panel structure, the checks
and their messages (naming columns and ids), Apollo-exact Halton draws
against a hand computation of the van der Corput sequence, the other kinds."""
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtri

import rbe
import rbe.iclv as iclv
from rbe.errors import ArgumentError


# ---------------------------------------------------------------------- Database
def test_rows_grouped_by_individual_in_first_appearance_order(small_panel):
    d = iclv.Database(small_panel, id_col="ID")
    assert d.n_individuals == 5 and d.n_rows == 12
    assert list(d.ids) == [3, 1, 2, 5, 4]  # order of first appearance
    assert d.offsets.numpy().tolist() == [0, 3, 5, 7, 8, 12]
    # rows of an individual keep their original order
    assert d.df["ID"].tolist() == [3, 3, 3, 1, 1, 2, 2, 5, 4, 4, 4, 4]
    np.testing.assert_array_equal(d.df["x"].to_numpy(), small_panel["x"].to_numpy()[d.row_order])
    assert tuple(d.row("x").shape) == (12, 1) and tuple(d.ind("age").shape) == (5, 1)
    np.testing.assert_allclose(d.ind("age").numpy()[:, 0], [small_panel.loc[small_panel.ID == i, "age"].iloc[0] for i in d.ids])


def test_missing_column_named_with_suggestion(small_panel):
    d = iclv.Database(small_panel)
    with pytest.raises(iclv.DataError, match=r"'cots'.*did you mean 'cost'"):
        d.row("cots")
    with pytest.raises(iclv.DataError, match="id column 'id'"):
        iclv.Database(small_panel, id_col="id")
    assert issubclass(iclv.DataError, ArgumentError) and issubclass(iclv.DataError, ValueError)


def test_nan_in_a_used_column_names_column_and_ids(small_panel):
    df = small_panel.copy()
    df.loc[4, "cost"] = np.nan  # a row of individual 5
    d = iclv.Database(df)
    d.row("x")  # unused columns may hold NaN
    with pytest.raises(iclv.DataError, match=r"column 'cost' has missing values \(NaN\) for individuals 5"):
        d.row("cost")
    df2 = small_panel.copy()
    df2.loc[0, "ID"] = np.nan
    with pytest.raises(iclv.DataError, match="missing"):
        iclv.Database(df2)


def test_individual_level_column_must_be_constant(small_panel):
    d = iclv.Database(small_panel)
    with pytest.raises(iclv.DataError, match=r"column 'x' .*varies within individuals 3, 1, 2, 4"):
        d.ind("x")


def test_values_outside_declared_categories(small_panel):
    d = iclv.Database(small_panel)
    with pytest.raises(iclv.DataError, match=r"column 'q1' takes values \[5\] outside its declared categories \[1, 2, 3, 4\] \(individuals 3\)"):
        d.codes("q1", [1, 2, 3, 4], level="individual")
    codes = d.codes("q1", [1, 2, 3, 4, 5], level="individual").numpy()
    assert codes.tolist() == [4, 0, 2, 3, 1]


def test_individual_table_with_individuals_without_rows(small_panel):
    ind = pd.DataFrame({"ID": [1, 2, 3, 4, 5, 9], "income": [1.0, 2, 3, 4, 5, 6]})
    with pytest.raises(iclv.DataError, match="individuals 9 of the individual-level data have no rows"):
        iclv.Database(small_panel, individuals=ind)
    with pytest.raises(iclv.DataError, match="individuals 5 have choice rows but no individual-level data"):
        iclv.Database(small_panel, individuals=ind[ind.ID < 5])
    d = iclv.Database(small_panel, individuals=ind[ind.ID < 9])
    assert d.ind("income").numpy()[:, 0].tolist() == [3.0, 1.0, 2.0, 5.0, 4.0]
    assert d.row("income").numpy()[:3, 0].tolist() == [3.0, 3.0, 3.0]


def test_not_a_dataframe():
    with pytest.raises(iclv.DataError, match="pandas DataFrame"):
        iclv.Database({"ID": [1]})


def test_expand_and_panel_sum(small_panel):
    d = iclv.Database(small_panel)
    x = rbe.from_numpy(np.arange(10.0).reshape(5, 2))
    e = d.expand(x).numpy()
    np.testing.assert_array_equal(e, np.arange(10.0).reshape(5, 2)[d.ind_index_np])
    s = d.panel_sum(rbe.from_numpy(np.ones((12, 3)))).numpy()
    np.testing.assert_array_equal(s[:, 0], d.tasks_per_individual)


# ---------------------------------------------------------------------- Parameters
def test_parameters_checks_and_views():
    p = iclv.Parameters({"a": 1.0, "b": -0.5, "c": 2.0}, fixed=["c"])
    assert p.free_names == ["a", "b"] and p.fixed_names == ["c"]
    with pytest.raises(iclv.SpecificationError, match="defined twice"):
        p.add("a", 0.0)
    with pytest.raises(iclv.SpecificationError, match="not finite"):
        p.add("d", float("nan"))
    with pytest.raises(iclv.SpecificationError, match="outside its bounds"):
        p.add("e", 5.0, lower=0, upper=1)
    with pytest.raises(iclv.SpecificationError, match="unknown parameter 'bb'.*'b'"):
        p.fix("bb")
    from rbe.iclv.parameters import ParamView

    v = ParamView(p, rbe.from_numpy(np.array([1.0, -0.5])))
    assert float(v.a) == 1.0 and float(v["c"]) == 2.0
    np.testing.assert_array_equal(v.vector(["a", "c"]).numpy(), [1.0, 2.0])
    with pytest.raises(iclv.SpecificationError, match="unknown parameter 'aa'"):
        v["aa"]


# ---------------------------------------------------------------------- Draws
def _vdc_by_hand(i: int, base: int) -> float:
    """van der Corput radical inverse of i, digit by digit, exactly."""
    f, r = Fraction(1, base), Fraction(0)
    while i > 0:
        r += f * (i % base)
        i //= base
        f /= base
    return float(r)


def test_halton_is_van_der_corput_from_index_1():
    # the first points in base 2 and 3, as printed in every textbook
    assert iclv.halton_sequence(2, 1, 7).tolist() == [0.5, 0.25, 0.75, 0.125, 0.625, 0.375, 0.875]
    assert iclv.halton_sequence(3, 1, 4).tolist() == [1 / 3, 2 / 3, 1 / 9, 4 / 9]
    for base in (2, 3, 5, 7, 11, 13):
        got = iclv.halton_sequence(base, 1, 500)
        assert got.tolist() == [_vdc_by_hand(i, base) for i in range(1, 501)]


def test_apollo_assignment_of_halton_draws():
    N, R = 7, 13
    d = iclv.Draws(R, ["a", "b", "c"], kind="halton").generate(N)
    assert d.shape == (N, R, 3)
    for l, base in enumerate((2, 3, 5)):
        for n in range(1, N + 1):  # individual n takes points (n-1)R+1 .. nR
            want = [ndtri(_vdc_by_hand(i, base)) for i in range((n - 1) * R + 1, n * R + 1)]
            np.testing.assert_array_equal(d[n - 1, :, l], want)
    # skip drops the first points of every dimension
    s = iclv.Draws(R, ["a"], kind="halton", skip=10, distribution="uniform").generate(2)
    np.testing.assert_array_equal(s[0, :, 0], [_vdc_by_hand(i, 2) for i in range(11, 11 + R)])


def test_other_kinds():
    N, R = 6, 16
    for kind in ("sobol", "mlhs", "pseudo"):
        a = iclv.Draws(R, ["a", "b"], kind=kind, seed=4).generate(N)
        b = iclv.Draws(R, ["a", "b"], kind=kind, seed=4).generate(N)
        assert a.shape == (N, R, 2) and np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)  # seeded
    u = iclv.Draws(R, ["a"], kind="mlhs", distribution="uniform", seed=1).generate(N)
    # MLHS: one point in each of the R strata of every individual
    for n in range(N):
        assert sorted(np.floor(u[n, :, 0] * R).astype(int).tolist()) == list(range(R))
    hs = iclv.Draws(R, ["a", "b"], kind="halton", scramble=True, seed=2).generate(N)
    assert np.isfinite(hs).all() and not np.allclose(hs, iclv.Draws(R, ["a", "b"]).generate(N))
    gh = iclv.Draws(9, ["a"], kind="gauss-hermite")
    x, w = gh.generate(3)[0, :, 0], gh.weights()
    assert abs(w.sum() - 1) < 1e-14 and abs((w * x**2).sum() - 1) < 1e-13 and abs((w * x**4).sum() - 3) < 1e-12


def test_draws_errors():
    with pytest.raises(iclv.SpecificationError, match="unknown kind 'haltn'.*'halton'"):
        iclv.Draws(10, ["a"], kind="haltn")
    with pytest.raises(iclv.SpecificationError, match="one latent variable"):
        iclv.Draws(10, ["a", "b"], kind="gauss-hermite")
    with pytest.raises(iclv.SpecificationError, match=r"\(N, R, L\)"):
        iclv.Draws.from_array(np.zeros((3, 4)), ["a"])
    with pytest.raises(iclv.SpecificationError, match="2 dimensions but 1 names"):
        iclv.Draws.from_array(np.zeros((3, 4, 2)), ["a"])
    d = iclv.Draws.from_array(np.zeros((3, 4, 1)), ["a"])
    with pytest.raises(iclv.SpecificationError, match="3 individuals, the data has 5"):
        d.generate(5)
