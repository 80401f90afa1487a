"""The gamma slider redraws the heatmap with the values for the new gamma (no kernel needed)."""

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib.bellman import evaluate_policy
from course_lib.mdp import small_gridworld, sutton_barto_gridworld, uniform_policy
from course_lib.plots import value_heatmap
from course_lib.widgets import gamma_slider_heatmap, update_value_heatmap


def _z(fig):
    return np.asarray(fig.data[0].z, dtype=float)


def test_moving_the_slider_shows_the_values_for_that_gamma():
    mdp = sutton_barto_gridworld()
    pi = uniform_policy(mdp)
    box = gamma_slider_heatmap(mdp, pi, gamma=0.9)
    before = _z(box.figure).copy()
    # Book value of cell A (Figure 3.2) at the initial gamma.
    assert before[0, 1] == pytest.approx(8.8, abs=0.05)
    for gamma in (0.0, 0.5, 0.97):
        box.slider.value = gamma
        expected = evaluate_policy(mdp.with_gamma(gamma), pi).reshape(5, 5)
        np.testing.assert_allclose(_z(box.figure), expected)
        assert f"{gamma:.2f}" in box.figure.layout.title.text
    assert not np.allclose(_z(box.figure), before)


def test_gamma_zero_gives_mean_immediate_reward():
    # At gamma = 0, V(s) = sum_a pi(a|s) R[s, a]: independent of the solver.
    mdp = sutton_barto_gridworld()
    fig = go.Figure(value_heatmap(np.zeros(25), (5, 5)))
    update_value_heatmap(fig, mdp, uniform_policy(mdp), 0.0)
    np.testing.assert_allclose(_z(fig), mdp.R.mean(axis=1).reshape(5, 5))


def test_colour_range_follows_the_values():
    mdp = small_gridworld()
    fig = go.Figure(value_heatmap(np.zeros(16), (4, 4)))
    V = update_value_heatmap(fig, mdp, uniform_policy(mdp), 1.0)
    assert fig.data[0].zmax == pytest.approx(np.max(np.abs(V)))


def test_slider_rejects_bad_arguments():
    mdp = sutton_barto_gridworld()
    with pytest.raises(ValueError, match="gamma"):
        gamma_slider_heatmap(mdp, uniform_policy(mdp), gamma=1.5)
    with pytest.raises(ValueError, match="pi"):
        gamma_slider_heatmap(mdp, np.ones((25, 4)), gamma=0.5)
