"""The epsilon slider of chapter 4 redraws both learning curves and both greedy paths (no kernel needed)."""

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib.mdp import CLIFF_GOAL, CLIFF_START, cliff_walking
from course_lib.td import greedy_path, q_learning, sarsa
from course_lib.widgets import cliff_comparison, cliff_figure, epsilon_slider_cliff, update_cliff_figure

EDGE_PATH = [CLIFF_START] + [24 + c for c in range(12)] + [CLIFF_GOAL]
SMALL = dict(n_runs=4, n_episodes=60, seed=1)


def _xy(trace):
    return np.asarray(trace.x, dtype=float), np.asarray(trace.y, dtype=float)


def _cells(trace):
    x, y = _xy(trace)
    return (y * 12 + x).astype(int).tolist()


def test_comparison_matches_the_learners_run_directly():
    mdp = cliff_walking()
    got = cliff_comparison(0.1, smooth=1, **SMALL)
    for name, learner in (("sarsa", sarsa), ("q_learning", q_learning)):
        returns, Q = learner(mdp, CLIFF_START, 60, n_runs=4, alpha=0.5, epsilon=0.1, seed=1)
        np.testing.assert_allclose(got[name + "_curve"], returns.mean(axis=0))
        paths = [greedy_path(q, mdp, CLIFF_START).tolist() for q in Q]
        assert got[name + "_path"].tolist() in paths
        assert got[name + "_path_runs"] == max(paths.count(p) for p in paths)


def test_smoothing_is_a_trailing_mean():
    raw = cliff_comparison(0.1, smooth=1, **SMALL)["sarsa_curve"]
    smoothed = cliff_comparison(0.1, smooth=5, **SMALL)["sarsa_curve"]
    expected = [raw[max(0, i - 4): i + 1].mean() for i in range(len(raw))]
    np.testing.assert_allclose(smoothed, expected)
    with pytest.raises(ValueError, match="smooth"):
        cliff_comparison(0.1, smooth=0, **SMALL)


def test_callback_redraws_curves_paths_and_title():
    fig = cliff_figure(cliff_comparison(0.3, **SMALL))
    before = [_xy(fig.data[i])[1].copy() for i in (0, 1)]
    result = update_cliff_figure(fig, 0.0, **SMALL)
    for i, name in enumerate(("sarsa", "q_learning")):
        np.testing.assert_allclose(_xy(fig.data[i])[1], result[name + "_curve"])
        assert not np.allclose(_xy(fig.data[i])[1], before[i])
        assert _cells(fig.data[3 + i]) == result[name + "_path"].tolist()
    assert "0.00" in fig.layout.title.text


def test_at_epsilon_zero_both_walk_the_edge():
    # Without exploration there is nothing to fear on the edge: both greedy paths are optimal.
    fig = cliff_figure(cliff_comparison(0.1, **SMALL))
    result = update_cliff_figure(fig, 0.0, n_runs=4, n_episodes=100, seed=0)
    assert _cells(fig.data[3]) == EDGE_PATH == _cells(fig.data[4])
    assert result["sarsa_curve"][-1] == pytest.approx(-13.0)


def test_slider_drives_the_figure_widget():
    box = epsilon_slider_cliff(epsilon=0.2, **SMALL)
    assert isinstance(box.figure, go.FigureWidget)
    before = _xy(box.figure.data[0])[1].copy()
    box.slider.value = 0.0
    expected = cliff_comparison(0.0, **SMALL)
    np.testing.assert_allclose(_xy(box.figure.data[0])[1], expected["sarsa_curve"])
    assert not np.allclose(before, expected["sarsa_curve"])
    assert "0.00" in box.figure.layout.title.text


def test_slider_rejects_bad_epsilon():
    with pytest.raises(ValueError, match="epsilon"):
        epsilon_slider_cliff(epsilon=0.8, max_epsilon=0.5, **SMALL)
