"""AlpacaEval's length-controlled win rate (its ``length_controlled_v1`` GLM), written from its description and code.

For a rated model m against the baseline, one row per judged instruction i, a logistic model of the model's outcome
``y`` (soft, in [0, 1]) without an intercept::

    P(m preferred on i) = sigmoid(w_len * tanh(delta_i / sd) + w_diff * d_i + w_model)

``delta_i`` = length(m's answer) - length(the baseline's), in characters, ``sd`` its standard deviation over the
model's rows (ddof 1), ``d_i`` the instruction's difficulty (from AlpacaEval's estimates in a file, or fitted from
every rated model's outcomes on it, ``difficulty_from_outcomes``), and ``w_model`` the model term. The weights are
fitted with an L1 penalty ``|w|_1 + C * (weighted soft-label log loss)``, C chosen among ``CS`` by 5-fold
cross-validation of the held-out log loss and refitted on all rows. The length-controlled win rate is the fitted
model's prediction with the length term zeroed, averaged over the model's instructions:
``mean_i sigmoid(w_diff * d_i + w_model)``.

Regularisation toward the baseline: AlpacaEval adds the annotations of two "gamed" versions of its baseline (prompted
to be verbose or concise: same quality, other lengths) as extra rows without the model term, each row weighted
``LAMBDA / 2``, so the length and difficulty weights are pulled toward what the baseline's own length changes show.
Here those rows come from the store when it holds them (models labelled ``<baseline>_verbose`` /
``<baseline>_concise``, AlpacaEval's names), each gamed model's rows weighted ``LAMBDA / (number of them)``; without
them the fit has no such rows and the board says so.

Where the fit cannot be trusted the rate is withheld and a short reason given instead (``LCResult.note``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evalharness.config import ConfigError

LC_METHODS = ("alpacaeval-v1", "tanh-length")
LAMBDA = 0.2  # AlpacaEval's regularize_to_baseline_lambda
N_SPLITS = 5  # AlpacaEval's cross-validation folds
CS = np.logspace(-4, 4, 10)  # the inverse penalty strengths cross-validation chooses from (scikit-learn's default grid)
MIN_PAIRS = 50  # 5 folds of at least 10 held-out pairs each; fewer make the chosen penalty noise
MIN_DIFFICULTY_MODELS = 3  # a difficulty fitted from fewer models' outcomes mostly repeats the model's own outcome
ONE_SIDED = 0.95  # when >= 95% of a model's answers are longer (or shorter) than the baseline's, equal length is an
#                   extrapolation that only gamed-baseline rows, which span both signs, can anchor

# Short reasons shown in the LC cell where no rate is printed, and the one mark shown beside a printed rate.
NO_BASELINE = "no baseline"
NO_DIFFICULTY = "no difficulty"
TOO_FEW = "too few pairs"
ONE_SIDED_LENGTHS = "one-sided lengths"
FAR_FROM_RAW = "far from raw"


@dataclass(frozen=True)
class LCResult:
    """Per model (M,): ``rate`` in [0, 1] (NaN where withheld) and ``note`` (a reason above, or None);
    ``gamed`` the gamed-baseline models whose rows regularised the fits."""

    rate: np.ndarray
    note: list[str | None]
    gamed: list[int]


# ------------------------------------------------------------------------------------------ instruction difficulty


def difficulty_from_outcomes(model: np.ndarray, prompt: np.ndarray, y: np.ndarray,
                             n_prompts: int) -> tuple[np.ndarray, int]:
    """Each instruction's difficulty from every rated model's outcome on it, as AlpacaEval estimates it when it has no
    stored estimate: the logit of the mean outcome over models, here smoothed by half an outcome each way so an
    instruction every model won (or lost) stays finite: ``d_i = logit((sum_m y_mi + 1/2) / (n_i + 1))``.

    Returns ``d`` (P,) (NaN for instructions no model was judged on) and the number of distinct models.

    >>> d, m = difficulty_from_outcomes(np.array([0, 1, 2, 0]), np.array([0, 0, 0, 1]), np.array([1, 1, 0, 0.5]), 2)
    >>> np.round(d, 4).tolist(), m  # (2 + .5) / 4 -> logit(0.625); (0.5 + .5) / 2 -> 0
    ([0.5108, 0.0], 3)
    """
    prompt = np.asarray(prompt, dtype=np.int64)
    total = np.bincount(prompt, weights=y, minlength=n_prompts)
    n = np.bincount(prompt, minlength=n_prompts).astype(np.float64)
    p = (total + 0.5) / (n + 1.0)
    return np.where(n > 0, np.log(p / (1.0 - p)), np.nan), int(np.unique(model).size)


def read_difficulty(path: str | Path) -> dict[str, dict]:
    """AlpacaEval's instruction-difficulty estimates from a CSV file: a key column ``index`` (the instruction's
    0-based position in AlpacaEval's evaluation set; an unnamed first column of integers is read as one, as
    AlpacaEval writes it) or ``instruction`` (its text), and a value column ``instruction_difficulty`` (else the
    second column). Returns ``{"index": {position: d}}`` or ``{"instruction": {text: d}}``; a bad file is one
    ``ConfigError`` naming the file, row and field."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--instruction-difficulty {path}: cannot read it ({type(e).__name__})") from None
    if len(rows) < 2 or len(rows[0]) < 2:
        raise ConfigError(f"--instruction-difficulty {path}: expected a header and rows of a key and a difficulty")
    header = [h.strip() for h in rows[0]]
    key_col = next((i for i, h in enumerate(header) if h in ("instruction", "index")), 0)
    val_col = header.index("instruction_difficulty") if "instruction_difficulty" in header else (
        1 if key_col == 0 else 0)
    kind = "instruction" if header[key_col] == "instruction" else "index"
    out: dict = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        where = f"--instruction-difficulty {path}:{number}"
        if len(row) <= max(key_col, val_col):
            raise ConfigError(f"{where}: expected {len(header)} columns, got {len(row)}")
        try:
            value = float(row[val_col])
        except ValueError:
            raise ConfigError(f"{where} field {header[val_col] or 'difficulty'!r}: not a number: "
                              f"{row[val_col][:40]!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{where} field {header[val_col] or 'difficulty'!r}: not finite: {row[val_col]!r}")
        key = row[key_col]
        if kind == "index":
            try:
                key = int(key)
            except ValueError:
                raise ConfigError(f"{where} field {header[key_col] or 'index'!r}: expected an integer position "
                                  f"(or name the column 'instruction'), got {key[:40]!r}") from None
        out[key] = value
    return {kind: out}


def difficulty_for_prompts(table: dict[str, dict], source_ids: list[str | None],
                           texts: list[str | None]) -> np.ndarray:
    """The file's difficulty per board prompt (P,), NaN where it has none: by position (a prompt's source id is its
    1-based position in AlpacaEval's set) or by instruction text."""
    if "instruction" in table:
        values = table["instruction"]
        return np.array([values.get(t, np.nan) if t is not None else np.nan for t in texts], dtype=np.float64)
    values = table["index"]

    def position(sid):
        try:
            return int(sid) - 1
        except (TypeError, ValueError):
            return None

    return np.array([values.get(position(s), np.nan) for s in source_ids], dtype=np.float64)


# ------------------------------------------------------------------------------------------ the GLM


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _loss(X: np.ndarray, y: np.ndarray, sw: np.ndarray, w: np.ndarray) -> float:
    """Weighted soft-label log loss, summed."""
    eta = X @ w
    return float(-(sw * (y * _log_sigmoid(eta) + (1.0 - y) * _log_sigmoid(-eta))).sum())


def fit_l1_logistic(X: np.ndarray, y: np.ndarray, sw: np.ndarray, C: float, max_iter: int = 100,
                    tol: float = 1e-9) -> np.ndarray:
    """``argmin_w |w|_1 + C * sum_r sw_r * logloss(y_r, sigmoid(X_r w))`` with soft labels ``y`` in [0, 1], no
    intercept. ``X`` (n, k), ``y`` and ``sw`` (n,). Proximal Newton: each step minimises the penalty plus the loss's
    quadratic model by coordinate descent (exact soft-thresholding per weight), then backtracks until the objective
    drops; the objective is convex, so this reaches its minimum.

    >>> X = np.ones((4, 1)); y = np.array([1.0, 1.0, 1.0, 0.0])
    >>> round(float(fit_l1_logistic(X, y, np.ones(4), 1e6)[0]), 4)  # no real penalty: logit(3/4)
    1.0986
    >>> float(fit_l1_logistic(X, y, np.ones(4), 1e-4)[0])  # the penalty wins: every weight is 0
    0.0
    """
    k = X.shape[1]
    w = np.zeros(k)

    def objective(v):
        return C * _loss(X, y, sw, v) + np.abs(v).sum()

    current = objective(w)
    for _ in range(max_iter):
        p = np.exp(_log_sigmoid(X @ w))
        g = C * X.T @ (sw * (p - y))
        H = C * (X.T * (sw * p * (1.0 - p))) @ X
        d = np.zeros(k)
        for _ in range(200):
            biggest = 0.0
            for j in range(k):
                a = H[j, j]
                if a <= 1e-300:  # a column of zeros: nothing to fit, the penalty keeps it at 0
                    new = -w[j]
                else:
                    b = g[j] + H[j] @ d - a * d[j]
                    u = w[j] - b / a
                    new = np.sign(u) * max(abs(u) - 1.0 / a, 0.0) - w[j]
                biggest = max(biggest, abs(new - d[j]))
                d[j] = new
            if biggest < 1e-13:
                break
        decrease = g @ d + np.abs(w + d).sum() - np.abs(w).sum()
        t = 1.0
        while t > 1e-12:
            trial = objective(w + t * d)
            if trial <= current + 1e-4 * t * decrease:
                break
            t *= 0.5
        else:
            break
        w, current = w + t * d, trial
        if np.max(np.abs(t * d), initial=0.0) < tol:
            break
    return w


def fit_cv(X: np.ndarray, y: np.ndarray, sw: np.ndarray, n_splits: int = N_SPLITS,
           cs: np.ndarray = CS) -> tuple[np.ndarray, float]:
    """The L1 GLM with its penalty chosen by ``n_splits``-fold cross-validation (rows dealt to folds in turn): the C
    with the lowest mean held-out weighted log loss (the first on a tie, the strongest penalty), then refitted on
    every row. Returns the weights and the chosen C."""
    fold = np.arange(len(y)) % n_splits
    scores = np.zeros(len(cs))
    for f in range(n_splits):
        train, test = fold != f, fold == f
        norm = max(float(sw[test].sum()), 1e-300)
        for c_i, c in enumerate(cs):
            w = fit_l1_logistic(X[train], y[train], sw[train], float(c))
            scores[c_i] += _loss(X[test], y[test], sw[test], w) / norm / n_splits
    best = float(cs[int(np.argmin(scores))])
    return fit_l1_logistic(X, y, sw, best), best


def far_from_raw(raw: float, lc: float, abs_diff: float = 0.10, rel_diff: float = 4.0) -> bool:
    """AlpacaEval's warning that the GLM may have failed: the LC rate moved more than ``abs_diff`` and more than a
    ``1/rel_diff`` share of the room left on that side (rates in [0, 1]).

    >>> far_from_raw(0.2, 0.09), far_from_raw(0.2, 0.11), far_from_raw(0.5, 0.63)
    (True, False, True)
    """
    too_small = lc < min(raw - raw / rel_diff, raw - abs_diff)
    too_large = lc > max(raw + (1.0 - raw) / rel_diff, raw + abs_diff)
    return bool(too_small or too_large)


def length_controlled_v1(model: np.ndarray, prompt: np.ndarray, y: np.ndarray, len_self: np.ndarray,
                         len_other: np.ndarray, difficulty: np.ndarray | None, n_models: int,
                         raw: np.ndarray, gamed: list[int] | None = None) -> LCResult:
    """AlpacaEval's length-controlled win rate per model against the baseline (the module docstring).

    Rows (n,) are every rated model's counted pairs against the baseline from the model's side: ``model`` (int),
    ``prompt`` (int into ``difficulty`` (P,), or None: no difficulty known), outcome ``y``, lengths ``len_self``
    (the model's answer) and ``len_other`` (the baseline's). ``raw`` (M,) the raw win rates (for the far-from-raw
    mark); ``gamed`` the models that are gamed versions of the baseline (their rows regularise every fit)."""
    model, prompt = np.asarray(model, dtype=np.int64), np.asarray(prompt, dtype=np.int64)
    y = np.asarray(y, dtype=np.float64)
    delta = np.asarray(len_self, dtype=np.float64) - np.asarray(len_other, dtype=np.float64)
    gamed = sorted(set(gamed or []))
    rate = np.full(n_models, np.nan)
    note: list[str | None] = [None] * n_models
    if difficulty is None:
        for m in np.unique(model):
            note[int(m)] = NO_DIFFICULTY
        return LCResult(rate, note, gamed)
    d = np.asarray(difficulty, dtype=np.float64)[prompt]
    ok = np.isfinite(delta) & np.isfinite(d) & np.isfinite(y)
    z = np.zeros_like(delta)
    for m in np.unique(model[ok]):
        rows = ok & (model == m)
        sd = float(np.std(delta[rows], ddof=1)) if rows.sum() > 1 else 0.0
        z[rows] = np.tanh(delta[rows] / sd) if sd > 0 else 0.0
    reg_rows = ok & np.isin(model, gamed)
    reg_weight = np.where(reg_rows, LAMBDA / max(len(gamed), 1), 0.0)
    for m in range(n_models):
        own = ok & (model == m)
        if not np.any(model == m):
            continue
        if own.sum() < MIN_PAIRS:
            note[m] = TOO_FEW if np.any(np.isfinite(d[model == m])) else NO_DIFFICULTY
            continue
        extra = reg_rows & (model != m)
        if not extra.any() and max(np.mean(delta[own] > 0), np.mean(delta[own] < 0)) >= ONE_SIDED:
            note[m] = ONE_SIDED_LENGTHS
            continue
        use = own | extra
        X = np.stack([z[use], d[use], own[use].astype(np.float64)], axis=1)
        sw = np.where(own[use], 1.0, reg_weight[use])
        w, _ = fit_cv(X, y[use], sw)
        rate[m] = float(np.mean(np.exp(_log_sigmoid(w[1] * d[own] + w[2]))))
        if np.isfinite(raw[m]) and far_from_raw(float(raw[m]), rate[m]):
            note[m] = FAR_FROM_RAW
    return LCResult(rate, note, gamed)
