"""DSL's supervised prediction g of the human code from the model's probability and other
columns, cross-fitted as R's dsl does: the rows split into folds, each fold predicted by a
model fitted on the human-coded rows of the other folds, so no row's g has seen its code."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from .._exceptions import UsageError
from .regression import numeric_columns
from .table import Prepared

FOLDS = 5


def features(prep: Prepared, covariates: Sequence[str]) -> npt.NDArray[np.float64]:
    """The model's probabilities, numeric covariates standardised, text covariates one-hot."""
    missing = [c for c in covariates if c not in prep.frame.columns]
    if missing:
        raise UsageError(f"--covariates: no column(s) {', '.join(missing)}")
    data = numeric_columns(prep.frame[list(covariates)])
    parts = [prep.f]
    for c in covariates:
        s = data[c]
        if pd.api.types.is_numeric_dtype(s):
            v = s.to_numpy(dtype=float)
            v = np.nan_to_num((v - np.nanmean(v)) / (np.nanstd(v) or 1.0))
            parts.append(v[:, None])
        else:
            parts.append(pd.get_dummies(s.astype(str), drop_first=True).to_numpy(dtype=float))
    return np.column_stack(parts)


def crossfit(
    prep: Prepared, covariates: Sequence[str], folds: int = FOLDS, seed: int = 0
) -> npt.NDArray[np.float64]:
    """g for every row and category: a logistic regression of the category's human
    indicator on the features, fitted out of fold."""
    from sklearn.linear_model import LogisticRegression

    x = features(prep, covariates)
    fold = np.random.default_rng(seed).permutation(len(prep.r)) % folds
    g = np.array(prep.f, dtype=float)
    for j in range(len(prep.labels)):
        for k in range(folds):
            train = prep.r & (fold != k)
            y = prep.y[train, j]
            if y.min() == y.max():  # one class only among the training codes: keep f
                continue
            fit = LogisticRegression(max_iter=1000).fit(x[train], y)
            g[fold == k, j] = fit.predict_proba(x[fold == k])[:, 1]
    return g
