"""Synthetic ICLV studies with known true values: the data, the model
function, the parameters (naive start values) and the truth.

- :func:`origin_study`: shaped like the origin's problem (326 individuals x
  18 binary probit choice tasks, 3 latent variables with a hierarchical
  structure: ``LV3`` explained by ``LV1``, ``LV2`` and covariates; 12
  five-point ordered-probit indicators, 4 per latent variable; 100 draws).
- :func:`drug_choice_study`: the size of Apollo's drug-choice ICLV example
  (1,000 individuals x 10 tasks, one latent variable with 4 five-point
  ordered-logit indicators, MNL over 4 alternatives with availabilities,
  100 draws, 37 parameters).

Both use raw thresholds (Apollo's parametrisation), latent-variable error
variances fixed to 1 (the usual normalisation), and start from naive values
(0 for the structural and choice coefficients, 1 for the loadings, evenly
spaced thresholds).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

import numpy as np

from .components import binary_probit, mnl, ordered_logit, ordered_probit
from .data import Database
from .draws import Draws
from .parameters import Parameters

__all__ = ["Study", "origin_study", "drug_choice_study"]


@dataclass
class Study:
    data: Database
    params: Parameters
    draws: Draws
    loglik: Callable
    truth: Dict[str, float]
    name: str

    def model(self):
        from .model import Model

        return Model(self.loglik, self.data, self.params, self.draws, name=self.name)


def _ordered_draw(rng, ystar, tau):
    return 1 + np.searchsorted(np.asarray(tau), ystar)  # categories 1..C


def origin_study(n_individuals: int = 326, n_tasks: int = 18, n_draws: int = 100, seed: int = 1, draws_kind: str = "halton",
                 n_indicators_per_lv: int = 4) -> Study:
    """The origin-shaped study (see the module docs); 73 parameters at the default sizes."""
    rng = np.random.default_rng(seed)
    N, T, K = n_individuals, n_tasks, n_indicators_per_lv
    age = rng.normal(0, 1, N)
    female = (rng.uniform(size=N) < 0.5).astype(float)
    truth: Dict[str, float] = {
        "g1_age": 0.5, "g1_female": -0.4,
        "g2_age": -0.3, "g2_female": 0.6,
        "g3_age": 0.2, "g3_female": 0.3, "b31": 0.6, "b32": -0.5,
        "asc": 0.3, "b_x1": -1.0, "b_x2": 0.6, "b_x3": 0.4, "lambda3": 0.8,
    }
    base_tau = np.array([-2.0, -0.7, 0.7, 2.0])
    ind_names: List[str] = []
    for l in range(3):
        for j in range(K):
            nm = f"I{l + 1}{j + 1}"
            ind_names.append(nm)
            truth[f"zeta_{nm}"] = 0.8 + 0.15 * j + 0.1 * l
            for k in range(4):
                truth[f"tau_{nm}_{k + 1}"] = float(base_tau[k] + 0.1 * (j - l))
    eta = rng.normal(size=(N, 3))
    lv1 = truth["g1_age"] * age + truth["g1_female"] * female + eta[:, 0]
    lv2 = truth["g2_age"] * age + truth["g2_female"] * female + eta[:, 1]
    lv3 = truth["g3_age"] * age + truth["g3_female"] * female + truth["b31"] * lv1 + truth["b32"] * lv2 + eta[:, 2]
    lvs = [lv1, lv2, lv3]
    rows = []
    ids = np.repeat(np.arange(1, N + 1), T)
    x1 = rng.normal(0, 1, N * T)
    x2 = rng.normal(0, 1, N * T)
    x3 = rng.uniform(-1, 1, N * T)
    V = truth["asc"] + truth["b_x1"] * x1 + truth["b_x2"] * x2 + truth["b_x3"] * x3 + truth["lambda3"] * np.repeat(lv3, T)
    choice = (V + rng.normal(size=N * T) > 0).astype(int)
    import pandas as pd

    df = pd.DataFrame({"ID": ids, "task": np.tile(np.arange(1, T + 1), N), "x1": x1, "x2": x2, "x3": x3, "choice": choice,
                       "age": np.repeat(age, T), "female": np.repeat(female, T)})
    for l in range(3):
        for j in range(K):
            nm = ind_names[l * K + j]
            ystar = truth[f"zeta_{nm}"] * lvs[l] + rng.normal(size=N)
            tau = [truth[f"tau_{nm}_{k + 1}"] for k in range(4)]
            df[nm] = np.repeat(_ordered_draw(rng, ystar, tau), T)
    data = Database(df, id_col="ID")
    params = Parameters()
    for n in truth:
        if n.startswith("zeta_"):
            params.add(n, 1.0)
        elif n.startswith("tau_"):
            params.add(n, [-1.5, -0.5, 0.5, 1.5][int(n[-1]) - 1])
        else:
            params.add(n, 0.0)
    levels = [1, 2, 3, 4, 5]

    def loglik(p, d, draws):
        age_, fem = d.ind("age"), d.ind("female")
        l1 = p.g1_age * age_ + p.g1_female * fem + draws["eta1"]
        l2 = p.g2_age * age_ + p.g2_female * fem + draws["eta2"]
        l3 = p.g3_age * age_ + p.g3_female * fem + p.b31 * l1 + p.b32 * l2 + draws["eta3"]
        out = {}
        for l, lv in enumerate((l1, l2, l3)):
            for j in range(K):
                nm = ind_names[l * K + j]
                out[nm] = ordered_probit(d, nm, p[f"zeta_{nm}"] * lv, [p[f"tau_{nm}_{k}"] for k in range(1, 5)], levels)
        Vc = p.asc + p.b_x1 * d.row("x1") + p.b_x2 * d.row("x2") + p.b_x3 * d.row("x3") + p.lambda3 * d.expand(l3)
        out["choice"] = d.panel_sum(binary_probit(d, "choice", Vc))
        return out

    draws = Draws(n_draws, ["eta1", "eta2", "eta3"], kind=draws_kind)
    return Study(data, params, draws, loglik, truth, "origin-shaped ICLV")


def drug_choice_study(n_individuals: int = 1000, n_tasks: int = 10, n_draws: int = 100, seed: int = 2, draws_kind: str = "halton") -> Study:
    """A 37-parameter ICLV the size of Apollo's drug-choice example (see the module docs)."""
    rng = np.random.default_rng(seed)
    N, T, J = n_individuals, n_tasks, 4
    cov = {"age_50": (rng.uniform(size=N) < 0.4).astype(float), "female": (rng.uniform(size=N) < 0.5).astype(float),
           "educ": (rng.uniform(size=N) < 0.3).astype(float), "chronic": (rng.uniform(size=N) < 0.25).astype(float),
           "income": rng.normal(0, 1, N)}
    truth: Dict[str, float] = {"asc_2": -0.3, "asc_3": 0.2, "asc_4": -0.5, "b_price": -0.6, "b_risk": -0.8, "b_side": -0.5,
                               "b_freq": 0.3, "b_origin_A": 0.4, "b_origin_B": -0.2,
                               "lambda_2": 0.5, "lambda_3": -0.4, "lambda_4": 0.6}
    for k, v in zip(cov, (0.4, -0.3, 0.5, 0.6, 0.2)):
        truth[f"gamma_{k}"] = v
    inds = ["att_quality", "att_ingredients", "att_patent", "att_dominance"]
    for j, nm in enumerate(inds):
        truth[f"zeta_{nm}"] = 1.0 + 0.3 * j * (-1) ** j
        for k, t in enumerate([-2.0, -0.8, 0.8, 2.2]):
            truth[f"tau_{nm}_{k + 1}"] = t + 0.1 * j
    assert len(truth) == 37
    lv = sum(truth[f"gamma_{k}"] * v for k, v in cov.items()) + rng.normal(size=N)
    ids = np.repeat(np.arange(1, N + 1), T)
    M = N * T
    att = {a: rng.normal(0, 1, (M, J)) for a in ("price", "risk", "side", "freq")}
    origin = rng.integers(0, 3, (M, J))  # 0 = C (base), 1 = A, 2 = B
    avail = np.ones((M, J), dtype=int)
    avail[rng.uniform(size=M) < 0.2, 3] = 0
    lv_rows = np.repeat(lv, T)
    U = np.zeros((M, J))
    for j in range(J):
        U[:, j] = (truth["b_price"] * att["price"][:, j] + truth["b_risk"] * att["risk"][:, j] + truth["b_side"] * att["side"][:, j]
                   + truth["b_freq"] * att["freq"][:, j] + truth["b_origin_A"] * (origin[:, j] == 1) + truth["b_origin_B"] * (origin[:, j] == 2))
        if j > 0:
            U[:, j] += truth[f"asc_{j + 1}"] + truth[f"lambda_{j + 1}"] * lv_rows
    G = U + rng.gumbel(size=(M, J))
    G[avail == 0] = -np.inf
    choice = 1 + G.argmax(axis=1)
    import pandas as pd

    cols = {"ID": ids, "choice": choice}
    for j in range(J):
        for a in att:
            cols[f"{a}_{j + 1}"] = att[a][:, j]
        cols[f"originA_{j + 1}"] = (origin[:, j] == 1).astype(float)
        cols[f"originB_{j + 1}"] = (origin[:, j] == 2).astype(float)
        cols[f"av_{j + 1}"] = avail[:, j]
    for k, v in cov.items():
        cols[k] = np.repeat(v, T)
    for nm in inds:
        ystar = truth[f"zeta_{nm}"] * lv + rng.logistic(size=N)
        cols[nm] = np.repeat(_ordered_draw(rng, ystar, [truth[f"tau_{nm}_{k}"] for k in range(1, 5)]), T)
    df = pd.DataFrame(cols)
    data = Database(df, id_col="ID")
    params = Parameters()
    for n in truth:
        if n.startswith("zeta_"):
            params.add(n, 1.0)
        elif n.startswith("tau_"):
            params.add(n, [-1.5, -0.5, 0.5, 1.5][int(n[-1]) - 1])
        else:
            params.add(n, 0.0)
    levels = [1, 2, 3, 4, 5]
    covs = list(cov)

    def loglik(p, d, draws):
        lv_ = draws["eta"]
        for k in covs:
            lv_ = lv_ + p[f"gamma_{k}"] * d.ind(k)
        out = {}
        for nm in inds:
            out[nm] = ordered_logit(d, nm, p[f"zeta_{nm}"] * lv_, [p[f"tau_{nm}_{k}"] for k in range(1, 5)], levels)
        lvr = d.expand(lv_)
        V = {}
        for j in range(J):
            v = (p.b_price * d.row(f"price_{j + 1}") + p.b_risk * d.row(f"risk_{j + 1}") + p.b_side * d.row(f"side_{j + 1}")
                 + p.b_freq * d.row(f"freq_{j + 1}") + p.b_origin_A * d.row(f"originA_{j + 1}") + p.b_origin_B * d.row(f"originB_{j + 1}"))
            if j > 0:
                v = v + p[f"asc_{j + 1}"] + p[f"lambda_{j + 1}"] * lvr
            V[f"alt{j + 1}"] = v
        out["choice"] = d.panel_sum(mnl(d, V, "choice", {f"alt{j + 1}": j + 1 for j in range(J)}, avail={f"alt{j + 1}": f"av_{j + 1}" for j in range(J)}))
        return out

    draws = Draws(n_draws, ["eta"], kind=draws_kind)
    return Study(data, params, draws, loglik, truth, "drug-choice-sized ICLV")
