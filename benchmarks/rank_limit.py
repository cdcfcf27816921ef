"""Can held-out counts reveal the planted rank at all?  The rank-recovery panel's limit.

Run:  python benchmarks/rank_limit.py             (the Poisson cases of the default panel,
                                                    draws 0-3: ~1 min, 2 cores)
      python benchmarks/rank_limit.py --draws 2   (draws 0-1 only)

Cross-validation scores a rank by how well a fit of that rank, made on the
kept entries, predicts the held-out ones.  That finds the planted rank only
when a fit of the planted rank predicts better than every smaller one.  On
counts this can fail however the rule is set: with few counts per entry the
weak components' parameters are so noisy that the maximum-likelihood fit of
the planted rank predicts worse than a smaller fit, even though the planted
rates themselves predict best.

For each Poisson case of ``rank_recovery.py``'s panel (the same generator
and seeds, ``seed = 1000·draw + case``), on the same kind of held-out sets
(3 speckled sets of 10 %), this reports the mean held-out KL error
(``sqrt(2 D / Σx)``, the cross-validation score) of

* the planted rates (``W H`` as drawn: the best any fit could hope for),
* the masked KL fit of the planted rank **started from the planted factors**
  (the most favourable start a fit can have; the sweep's ``max_iter`` and
  ``tol``),
* the masked KL fits from random starts at ranks ``k−4 … k+2`` (what
  cross-validation sees),

and whether that most favourable fit of the planted rank beats the best
random-start fit of a smaller rank.  Where it does not, no rule built on the
held-out likelihood of these fits can return the planted rank (or, when the
best smaller rank is further than one below it, anything within ±1).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import scipy.sparse as sp
from rank_recovery import POISSON_MEAN, SWEEP, panel, poisson_rates

import fastnmf
from fastnmf.rank import heldout_kl, speckled_holdout

SETTINGS = {  # the sweep's fits, and fits run on to (near) the maximum of the likelihood
    "sweep": {"beta_loss": "kullback-leibler", "max_iter": SWEEP["max_iter"], "tol": SWEEP["tol"]},
    "converged": {"beta_loss": "kullback-leibler", "max_iter": 1000, "tol": 0.0},
}


def score_case(name, k, m, n, seed, n_repeats=SWEEP["n_repeats"], holdout=SWEEP["holdout"]):
    """Mean held-out KL error of the planted rates and, for each of :data:`SETTINGS`, of
    the fit started from the planted factors and of random-start fits at ranks
    ``k-4 … k+2``."""
    rng_gen, rates, W0, H0 = poisson_rates(seed, m, n, k, POISSON_MEAN[name])
    X = rng_gen.poisson(rates).astype(np.float64)
    if name.endswith("sparse"):
        X = sp.csr_matrix(X)
    ranks = list(range(max(2, k - 4), k + 3))
    rng = np.random.RandomState(seed)
    planted = []
    scores = {how: {"from_planted": [], **{r: [] for r in ranks}} for how in SETTINGS}
    for _ in range(n_repeats):
        held = speckled_holdout(X.shape, holdout, rng.randint(2**31 - 1))
        planted.append(heldout_kl(X, W0, H0, held))
        fit_seed = rng.randint(2**31 - 1)
        for how, opts in SETTINGS.items():
            fit = fastnmf.nmf(X, k, init="custom", W=W0.copy(), H=H0.copy(), missing=held,
                              **opts)
            scores[how]["from_planted"].append(heldout_kl(X, fit.W, fit.H, held))
            fits = fastnmf.fit_many(X, ranks, n_runs=1, random_state=fit_seed, missing=held,
                                    **opts)
            for r in ranks:
                scores[how][r].append(heldout_kl(X, fits.best(r).W, fits.best(r).H, held))
    return {"case": name, "rank": k, "shape": [m, n], "seed": seed,
            "counts_per_entry": float(X.sum() / (m * n)), "planted": float(np.mean(planted)),
            **{how: {str(key): float(np.mean(v)) for key, v in sc.items()}
               for how, sc in scores.items()}}


def verdict(rec, how):
    """For the fits of ``SETTINGS[how]``: the lowest-error random-start rank, the best
    smaller one, and whether the fit of the planted rank from the planted factors
    beats that smaller one."""
    k = rec["rank"]
    fitted = {int(r): e for r, e in rec[how].items() if r != "from_planted"}
    lowest = min(fitted, key=fitted.get)
    smaller = {r: e for r, e in fitted.items() if r < k}
    best_smaller = min(smaller, key=smaller.get)
    return lowest, best_smaller, rec[how]["from_planted"] < smaller[best_smaller]


def row(rec):
    """A markdown table row; each fit column shows the sweep's fits | the converged ones."""
    def both(cell):
        return " \\| ".join(cell(rec[how], *rec["verdict"][how]) for how in SETTINGS)

    return (f"| {rec['case']} | {rec['rank']} | {rec['seed']} | "
            f"{rec['counts_per_entry']:.2f} | {rec['planted']:.4f} | "
            + both(lambda sc, *_: f"{sc['from_planted']:.4f}") + " | "
            + both(lambda sc, low, *_: f"{low} ({sc[str(low)]:.4f})") + " | "
            + both(lambda sc, _, sm, __: f"{sm} ({sc[str(sm)]:.4f})") + " | "
            + both(lambda sc, *v: "yes" if v[2] else "**no**") + " |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=4, help="draws 0 … draws-1 of every case")
    parser.add_argument("--out", default="rank_limit.json", help="raw results (JSON)")
    args = parser.parse_args(argv)

    records = []
    print("Held-out KL error (mean of 3 held-out sets); fits as the sweep's (200 iterations, "
          "tol 1e-4) | run to 1000 iterations")
    print("| case | k | seed | counts/entry | planted rates | fit of rank k from the planted "
          "factors | random starts: lowest-error rank | best smaller rank | planted rank "
          "visible |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for i, (name, k, m, n, _, _) in enumerate(panel()):
        if name not in POISSON_MEAN:
            continue
        for draw in range(args.draws):
            rec = score_case(name, k, m, n, 1000 * draw + i)
            records.append({**rec, "verdict": {how: verdict(rec, how) for how in SETTINGS}})
            print(row(records[-1]), flush=True)
    with open(args.out, "w") as f:
        json.dump(records, f, indent=1)
    print(f"\nraw results: {args.out}")


if __name__ == "__main__":
    main()
