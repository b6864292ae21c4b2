"""Cohen's κ on a hand-made table, and the judges report (flip rate, P(first), P(longer), agreement) from a store."""

import numpy as np
import pytest
from lbstore import make_store

from leaderboards.agreement import agreement_table, cohen_kappa, judge_report, judges_report
from leaderboards.query import LeaderboardError, judge_variants, read_store, select_judge

# Ten pairs, labels from m1's side (-1 loss, 0 tie, +1 win), judge X (rows) against the reference R (columns):
#             R=-1  R=0  R=+1
#   X=-1        3    0     1
#   X= 0        0    1     1
#   X=+1        1    0     3
# p_o = (3 + 1 + 3) / 10 = 0.7
# marginals X: 0.4 0.2 0.4, R: 0.4 0.1 0.5 -> p_e = .4*.4 + .2*.1 + .4*.5 = 0.38
# kappa = (0.7 - 0.38) / (1 - 0.38) = 0.32 / 0.62 = 0.516129...
LABELS = [(-1, -1)] * 3 + [(-1, 1), (0, 0), (0, 1), (1, -1)] + [(1, 1)] * 3
KAPPA = 0.32 / 0.62


def test_cohen_kappa_by_hand():
    x, y = np.array([a for a, _ in LABELS]), np.array([b for _, b in LABELS])
    p_o, kappa, confusion = cohen_kappa(x, y)
    assert confusion.tolist() == [[3, 0, 1], [0, 1, 1], [1, 0, 3]]
    assert p_o == pytest.approx(0.7) and kappa == pytest.approx(KAPPA)
    assert np.isnan(cohen_kappa(np.array([1, 1]), np.array([1, 1]))[1])  # p_e = 1: undefined, not 1


# X judges m1 vs base in both orders: +1 = ("first", "second"), -1 = ("second", "first"); the two ties are made
# differently: p4 by disagreeing orders ("first", "first"), p5 by two "tie"s. The reference stored each pair the
# other way round (A = base) in one order, base shown first: m1 winning is "second", losing "first".
X_ORDERS = {-1: ("second", "first"), 1: ("first", "second")}
REF_ORDER = {-1: "first", 0: "tie", 1: "second"}


def _store(tmp_path):
    x_spec, ref_spec = [], []
    for i, (x, r) in enumerate(LABELS):
        pid = f"p{i}"
        orders = X_ORDERS.get(x) or (("first", "first") if pid == "p4" else ("tie", "tie"))
        x_spec.append((pid, "m1", "base", *orders))
        ref_spec.append((pid, "base", "m1", REF_ORDER[r], None))
    store = make_store(tmp_path / "s.duckdb", x_spec, judge="x")
    return make_store(None, ref_spec, judge="ref", store=store)


def test_judge_report_by_hand(tmp_path):
    store = _store(tmp_path)
    with read_store(store.path) as con:
        variants = judge_variants(con)
        x, ref = select_judge(variants, "x"), select_judge(variants, "ref")
        report = judge_report(con, x, ref)
        table = agreement_table(con, [x, ref])
    assert (report.orders, report.pairs, report.two_order_pairs) == (20, 10, 10)
    # Flips: only p4 (its orders disagree once the swap is undone); p5's two ties agree.
    assert report.flip_rate == pytest.approx(1 / 10)
    # Decisive orders: 8 from the -1 pairs (4 "first", 4 "second"), 8 from the +1 pairs (4/4), p4's two "first":
    # P(first) = 10/18. Ties: p5's two orders of 20 valid.
    assert report.p_first == pytest.approx(10 / 18) and report.tie_rate == pytest.approx(2 / 20)
    # base's answers ("answer of base to pK") are longer than m1's: the longer wins in the 8 orders of the -1 pairs
    # and in p4's second order (base shown first, "first") -> 9 of 18 decisive orders.
    assert report.p_longer == pytest.approx(9 / 18)
    assert (report.shared, report.agreement, report.kappa) == (10, pytest.approx(0.7), pytest.approx(KAPPA))
    assert len(table) == 1 and (table[0].shared, table[0].kappa) == (10, pytest.approx(KAPPA))


def test_judges_report_tables(tmp_path):
    store = _store(tmp_path)
    judges, agreement = judges_report(store.path, None, "ref")
    assert [r["name"] for r in judges.rows] == ["x@1"]  # the reference is not reported against itself
    assert agreement.rows[0]["judge_x"] == "x@1" and agreement.rows[0]["judge_y"] == "ref@1"
    with pytest.raises(LeaderboardError, match="no judgments by judge 'rf'; did you mean 'ref'"):
        judges_report(store.path, None, "rf")
