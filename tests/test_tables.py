"""The paper-layout table and the statistics over seeds: one implementation, known inputs."""

import math

import pandas as pd
import pytest

from copd.common.stats import mean_std, paired, t975
from copd.common.tables import OVERALL, paper_table


def test_overall_is_per_seed_mean_of_benchmarks_ignoring_own_overall_and_pass_at_k():
    t = paper_table(
        {
            "CoPD": [
                {"add": 0.2, "rev": 0.6, "overall": 0.99, "add@pass4": 1.0},
                {"add": 0.4, "rev": 0.8, "overall": 0.0},
            ]
        }  # fmt: skip
    )
    assert t.columns == ["add", "rev", OVERALL]
    m, s, n = t.cell("CoPD", OVERALL)
    assert n == 2 and m == pytest.approx(0.5) and s == pytest.approx(math.sqrt(0.02))


def test_ties_are_all_bold_and_missing_benchmarks_are_a_dash():
    t = paper_table({"a": [{"x": 0.5, "y": 0.1}], "b": [{"x": 0.5}], "c": [{"x": 0.2}]})
    assert t.best("x") == {"a", "b"}
    md = t.markdown()
    assert "| a | **0.500 ± 0.000** |" in md and "| b | **0.500 ± 0.000** | — |" in md
    assert "| c | 0.200 ± 0.000 |" in md


def test_dashboard_table_agrees_with_the_paper_table():
    """app.dashboard.queries.results_table (from stored evaluations) and copd.common.tables give the same
    cells for the same scores, Overall and ties included."""
    from app.dashboard.queries import best_rows, results_table

    class Run:
        def __init__(self, i, method):
            self.id, self.method, self.config = i, method, {}

    rows = []
    scores = {1: {"add": 0.4, "rev": 0.6}, 2: {"add": 0.4, "rev": 0.8}, 3: {"add": 0.4}}
    for rid, sc in scores.items():
        for bench, v in sc.items():
            rows.append(dict(run_id=rid, model="merged", benchmark=bench, score=v, step=10))
    evals = pd.DataFrame(rows)
    runs = [Run(1, "copd"), Run(2, "copd"), Run(3, "mixed")]
    arms = {1: "copd", 2: "copd", 3: "mixed"}
    df = results_table(evals, runs, arms)
    ref = paper_table({"copd · merged": [scores[1], scores[2]], "mixed · merged": [scores[3]]})
    for label in ref.rows:
        for col in ref.columns:
            m, s, n = ref.cell(label, col)
            if math.isnan(m):
                assert pd.isna(df.at[label, col])
            else:
                assert df.at[label, col] == pytest.approx(m)
                assert df.at[label, f"{col} std"] == pytest.approx(s)
        assert df.at[label, "seeds"] == ref.seeds(label)
    assert best_rows(df)["add"] == ref.best("add") == {"copd · merged", "mixed · merged"}


def test_mean_std_edge_cases():
    assert all(math.isnan(v) for v in mean_std([]))
    assert mean_std([0.3]) == (0.3, 0.0)
    assert mean_std([0.5, 0.7]) == pytest.approx((0.6, math.sqrt(0.02)))


def test_paired_on_known_inputs():
    a = [0.60, 0.62, 0.58, 0.65, 0.61]
    b = [0.55, 0.57, 0.56, 0.60, 0.57]
    r = paired(a, b)
    d = [x - y for x, y in zip(a, b, strict=True)]
    assert r.n == 5 and r.diff == pytest.approx(sum(d) / 5)
    sd = pd.Series(d).std()
    assert r.ci_low == pytest.approx(r.diff - 2.776 * sd / math.sqrt(5))
    assert r.ci_high == pytest.approx(r.diff + 2.776 * sd / math.sqrt(5))
    # every difference positive: only the all-+ and all-- sign vectors reach |mean| -> 2/32
    assert r.p_value == pytest.approx(2 / 32) and r.p_method.startswith("exact")
    assert "diff +" in r.summary()


def test_paired_symmetric_noise_is_not_significant_and_length_must_match():
    r = paired([0.1, 0.3, 0.2, 0.4], [0.3, 0.1, 0.4, 0.2])
    assert r.diff == pytest.approx(0.0) and r.p_value == pytest.approx(1.0)
    with pytest.raises(ValueError, match="differ in length"):
        paired([0.1], [0.1, 0.2])
    many = paired([1.0] * 20, [0.0] * 20)
    assert many.p_method.startswith("sign-flip") and many.p_value < 0.001
    assert t975(4) == 2.776
    # beyond the table, Student's t (scipy.stats.t.ppf(0.975, df)), not the normal 1.960
    for df, want in ((31, 2.0395), (40, 2.0211), (60, 2.0003), (100, 1.9840), (1000, 1.9623)):
        assert abs(t975(df) - want) < 2e-4, df
