"""The group-size slider redraws the no-signal probability and the advantage's spread (no kernel needed).

References: a plain enumeration over the number of correct completions with math.comb, and a
simulation of many groups through group_advantages.
"""

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib.grpo import all_equal_probability, bernoulli_advantage_moments, group_advantages
from course_lib.widgets import group_size_curves, group_size_slider, update_group_size_figure


def moments_loop(p, G, eps=1e-4):
    mean = second = 0.0
    for k in range(G):  # k of the other G - 1 completions are right
        w = math.comb(G - 1, k) * p**k * (1 - p) ** (G - 1 - k)
        q = (k + 1) / G
        a = (1 - q) / (math.sqrt(q * (1 - q)) + eps)
        mean += w * a
        second += w * a * a
    return mean, math.sqrt(max(second - mean * mean, 0.0))


@pytest.mark.parametrize("G", [1, 2, 5, 16, 64])
def test_moments_match_the_enumeration(G):
    ps = np.array([0.02, 0.3, 0.5, 0.77, 0.99, 1.0])
    mean, std = bernoulli_advantage_moments(ps, G)
    for i, p in enumerate(ps):
        m, s = moments_loop(p, G)
        assert mean[i] == pytest.approx(m, abs=1e-9) and std[i] == pytest.approx(s, abs=1e-7)
    np.testing.assert_allclose(all_equal_probability(ps, G), [p**G + (1 - p) ** G for p in ps], rtol=1e-12)


def test_moments_match_a_simulation_through_group_advantages():
    rng = np.random.default_rng(0)
    p, G, n = 0.3, 6, 40_000
    rewards = (rng.random(n * G) < p).astype(float)
    adv = group_advantages(rewards, G)
    correct = adv[rewards == 1]
    mean, std = bernoulli_advantage_moments(np.array([p]), G)
    assert correct.mean() == pytest.approx(mean[0], abs=4 * correct.std() / math.sqrt(len(correct)))
    assert correct.std() == pytest.approx(std[0], rel=0.03)
    silent = (adv.reshape(-1, G) == 0).all(1).mean()
    assert silent == pytest.approx(all_equal_probability(p, G), abs=0.01)


def test_bigger_groups_shrink_the_spread_and_the_silent_share():
    Gs = (2, 4, 8, 16, 32, 64)
    curves = [group_size_curves(G, p=[0.1, 0.3, 0.5, 0.8]) for G in Gs]
    silent = np.array([c["all_equal"] for c in curves])  # (len(Gs), 4)
    rmse = np.array([np.sqrt((c["mean"] - c["population"]) ** 2 + c["std"] ** 2) for c in curves])
    std = np.array([c["std"] for c in curves])
    assert (np.diff(silent, axis=0) < 0).all()
    assert (np.diff(rmse, axis=0) < 0).all()  # the error against sqrt((1-p)/p) falls with G
    assert (std[-1] < std[-3]).all()  # the spread falls once G is large (a small G caps A: bias, not spread)
    assert group_size_curves(512, p=[0.3])["mean"][0] == pytest.approx(math.sqrt(0.7 / 0.3), rel=0.01)


def test_moving_the_slider_redraws_both_panels():
    box = group_size_slider(group_size=8)
    for G in (2, 5, 32):
        box.slider.value = G
        c = group_size_curves(G)
        np.testing.assert_allclose(box.figure.data[0].y, c["p"] ** G + (1 - c["p"]) ** G)
        np.testing.assert_allclose(box.figure.data[1].y, [moments_loop(p, G)[0] for p in c["p"]], atol=1e-9)
        assert f"G = {G}:" in box.figure.layout.title.text
        assert f"{0.5 ** (G - 1):.3f}" in box.figure.layout.title.text


def test_callback_on_a_plain_figure_and_bad_input():
    fig = go.Figure([go.Scatter() for _ in range(5)])
    c = update_group_size_figure(fig, 4)
    np.testing.assert_allclose(fig.data[4].y, np.sqrt((1 - c["p"]) / c["p"]))
    np.testing.assert_allclose(fig.data[3].y, np.maximum(c["mean"] - c["std"], 0))
    with pytest.raises(ValueError, match="group_size"):
        group_size_slider(group_size=1)
    with pytest.raises(ValueError, match="p must"):
        bernoulli_advantage_moments(np.array([0.0]), 4)
    with pytest.raises(ValueError, match="group_size"):
        all_equal_probability(0.5, 0)
