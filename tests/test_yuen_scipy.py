"""Yuen's trimmed test through scipy gives what the hand-written version gave, to 1e-12."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bolt_bot.decide import stats


def _by_hand(base, head, trim=0.1, confidence=0.95):
    """The hand-written Yuen-Welch test Bolt used before it called scipy: (ratio, (low, high), p)."""
    def parts(logs):
        logs = np.sort(logs)
        n = len(logs)
        g = int(math.floor(trim * n))
        h = n - 2 * g
        winsorized = np.clip(logs, logs[g], logs[n - g - 1])
        return logs[g:n - g].mean(), (n - 1) * winsorized.var(ddof=1) / (h * (h - 1)), h

    mean_b, d_b, h_b = parts(np.log(base))
    mean_h, d_h, h_h = parts(np.log(head))
    diff, se2 = mean_h - mean_b, d_b + d_h
    dof = se2**2 / (d_b**2 / (h_b - 1) + d_h**2 / (h_h - 1))
    se = math.sqrt(se2)
    p = 2 * sps.t.sf(abs(diff / se), dof)
    margin = sps.t.ppf(0.5 + confidence / 2, dof) * se
    return math.exp(diff), (math.exp(diff - margin), math.exp(diff + margin)), p


@pytest.mark.parametrize("n_base, n_head", [(5, 5), (10, 10), (12, 9), (20, 31), (2, 3)])
def test_scipy_yuen_matches_the_hand_written_test(n_base, n_head):
    rng = np.random.default_rng(n_base * 100 + n_head)
    pairs = [(list(np.exp(rng.normal(0, 0.05, n_base))), list(np.exp(rng.normal(shift, 0.05, n_head))))
             for shift in (0.0, 0.02, -0.1, 0.3)]
    pairs.append(([1.0] * n_base, list(np.exp(rng.normal(0, 0.05, n_head)))))  # one side without noise
    for (base, head), got in zip(pairs, stats.estimate_many_from_rounds(pairs)):
        ratio, (low, high), p = _by_hand(np.array(base), np.array(head))
        assert got.ratio == pytest.approx(ratio, rel=1e-12, abs=0)
        assert got.ci[0] == pytest.approx(low, rel=1e-12, abs=0) and got.ci[1] == pytest.approx(high, rel=1e-12, abs=0)
        assert got.p == pytest.approx(p, rel=1e-12, abs=1e-300)


def test_identical_rounds_give_an_exact_ratio():
    (same, moved) = stats.estimate_many_from_rounds([([2.0] * 6, [2.0] * 6), ([2.0] * 6, [3.0] * 6)])
    assert (same.ratio, same.ci, same.p) == (1.0, (1.0, 1.0), 1.0)
    assert moved.ratio == pytest.approx(1.5) and moved.ci == (moved.ratio, moved.ratio) and moved.p == 0.0
