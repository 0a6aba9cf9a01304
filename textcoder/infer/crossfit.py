"""DSL's supervised prediction g of the human code from the model's probability and other
columns, cross-fitted as R's dsl does: the rows split into folds, each fold predicted by a
model fitted on the human-coded rows of the other folds, so no row's g has seen its code."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._exceptions import UsageError
from .formula import numeric_columns
from .table import Prepared

FOLDS = 5
#: how far inside (0, 1) a probability is kept before its logit is taken
LOGIT_EDGE = 1e-4


def features(prep: Prepared, covariates: Sequence[str]) -> npt.NDArray[np.float64]:
    """The model's probabilities on the logit scale (so that a calibrated model's own
    probability is one of the fits), numeric covariates standardised, text ones one-hot."""
    missing = [c for c in covariates if c not in prep.frame.columns]
    if missing:
        raise UsageError(f"--covariates: no column(s) {', '.join(missing)}")
    data = numeric_columns(prep.frame[list(covariates)])
    parts = [logit(prep.f)]
    for c in covariates:
        s = data[c]
        if pd.api.types.is_numeric_dtype(s):
            v = s.to_numpy(dtype=float)
            v = np.nan_to_num((v - np.nanmean(v)) / (np.nanstd(v) or 1.0))
            parts.append(v[:, None])
        else:
            parts.append(pd.get_dummies(s.astype(str), drop_first=True).to_numpy(dtype=float))
    return np.column_stack(parts)


def logit(f: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """log(f / (1 - f)), with f kept a little inside (0, 1) so hard 0/1 labels stay finite."""
    p = np.clip(f, LOGIT_EDGE, 1 - LOGIT_EDGE)
    return np.asarray(np.log(p / (1 - p)), dtype=np.float64)


def crossfit(
    prep: Prepared, covariates: Sequence[str], folds: int = FOLDS, seed: int = 0
) -> npt.NDArray[np.float64]:
    """g for every row and category: a logistic regression of the category's human
    indicator on the features, fitted out of fold."""
    return out_of_fold(features(prep, covariates), prep.y, prep.r, prep.f, folds, seed)


def out_of_fold(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    r: npt.NDArray[np.bool_],
    f: npt.NDArray[np.float64],
    folds: int = FOLDS,
    seed: int = 0,
) -> npt.NDArray[np.float64]:
    """Each row's prediction of each column of `y` (rows, categories) from the features
    `x`, by a logistic regression fitted on the coded rows `r` of the other folds; where a
    fold's training codes hold one class only, the model's `f` stays."""
    from sklearn.linear_model import LogisticRegression

    fold = np.random.default_rng(seed).permutation(len(r)) % folds
    g = np.array(f, dtype=float)
    for j in range(y.shape[1]):
        for k in range(folds):
            train = r & (fold != k)
            yk = y[train, j]
            if yk.size == 0 or yk.min() == yk.max():
                continue
            fit = LogisticRegression(solver="newton-cholesky", max_iter=100).fit(x[train], yk)
            g[fold == k, j] = fit.predict_proba(x[fold == k])[:, 1]
    return g
