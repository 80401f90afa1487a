"""Chapter 7's lambda and gamma sliders redraw GAE's bias / variance / MSE curves (no kernel needed)."""

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib import widgets
from course_lib.bellman import evaluate_policy, q_from_v
from course_lib.pg import chain_mdp, gae_bias_variance
from course_lib.plots import gae_tradeoff_figure
from course_lib.widgets import gae_tradeoff_sliders, update_gae_tradeoff

MDP = chain_mdp(4, slip=0.2, gamma=0.9)
PI = np.tile([0.3, 0.7], (MDP.n_states, 1))
FAST_ARGS = dict(n_per_pair=40, horizon=40)


def _ys(fig):
    return [np.asarray(fig.data[i].y, dtype=float) for i in range(4)]


def _blank_figure():
    lams = np.linspace(0, 1, 21)
    return go.Figure(gae_tradeoff_figure(lams, np.zeros(21), np.zeros(21), 20, gamma=0.9, lam=0.5))


def test_callback_draws_the_curves_of_gae_bias_variance():
    fig = _blank_figure()
    out = update_gae_tradeoff(fig, MDP, PI, gamma=0.8, lam=0.25, n_average=10, **FAST_ARGS)
    mdp = MDP.with_gamma(0.8)
    direct = gae_bias_variance(mdp, PI, 0.5 * evaluate_policy(mdp, PI), out["lams"], 40, 40, seed=0)
    bias2, var_mean, mse, markers = _ys(fig)
    np.testing.assert_allclose(bias2, direct["bias2"])
    np.testing.assert_allclose(var_mean, direct["variance"] / 10)
    np.testing.assert_allclose(mse, direct["bias2"] + direct["variance"] / 10)
    assert list(fig.data[3].x) == [0.25] * 3
    np.testing.assert_allclose(markers, [np.interp(0.25, out["lams"], y) for y in (bias2, var_mean, mse)])
    assert "gamma = 0.80" in fig.layout.title.text and "lambda = 0.25" in fig.layout.title.text


def test_bias_at_lambda_zero_is_the_one_step_bias_by_hand():
    # lambda = 0: E[delta | s, a] = R + gamma P V_hat - V_hat; its action-dependent error, averaged over pairs.
    fig = _blank_figure()
    out = update_gae_tradeoff(fig, MDP, PI, gamma=0.9, lam=0.0, critic_scale=0.5, **FAST_ARGS)
    V = evaluate_policy(MDP, PI)
    V_hat = 0.5 * V
    A = q_from_v(MDP, V) - V[:, None]
    total, count = 0.0, 0
    for s in range(MDP.n_states):
        if MDP.terminal[s]:
            continue
        b = [MDP.R[s, a] + 0.9 * sum(MDP.P[s, a, t] * (0.0 if MDP.terminal[t] else V_hat[t]) for t in range(MDP.n_states))
             - V_hat[s] - A[s, a] for a in range(2)]
        mean_b = sum(PI[s, a] * b[a] for a in range(2))
        for a in range(2):
            total += (b[a] - mean_b) ** 2
            count += 1
    assert out["bias2"][0] == pytest.approx(total / count, rel=1e-10)
    assert out["at_lam"][0] == pytest.approx(total / count, rel=1e-10)
    # and at lambda = 1 only the horizon's leftover gamma^H remains
    assert out["bias2"][-1] < 1e-6 * out["bias2"][0]


def test_moving_lambda_only_moves_the_markers_and_uses_the_cache(monkeypatch):
    calls = []
    original = widgets.gae_tradeoff_curves

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(widgets, "gae_tradeoff_curves", counting)
    fig, cache = _blank_figure(), {}
    update_gae_tradeoff(fig, MDP, PI, gamma=0.9, lam=0.2, cache=cache, **FAST_ARGS)
    before = _ys(fig)[:3]
    update_gae_tradeoff(fig, MDP, PI, gamma=0.9, lam=0.8, cache=cache, **FAST_ARGS)
    after = _ys(fig)[:3]
    assert len(calls) == 1
    for x, y in zip(before, after):
        np.testing.assert_array_equal(x, y)
    assert list(fig.data[3].x) == [0.8] * 3
    update_gae_tradeoff(fig, MDP, PI, gamma=0.97, lam=0.8, cache=cache, **FAST_ARGS)
    assert len(calls) == 2 and not np.allclose(_ys(fig)[1], after[1])


def test_sliders_drive_the_figure():
    box = gae_tradeoff_sliders(MDP, PI, gamma=0.9, lam=0.5, **FAST_ARGS)
    assert isinstance(box.figure, go.FigureWidget)
    box.lam_slider.value = 0.3
    assert list(box.figure.data[3].x) == [0.3] * 3
    first = _ys(box.figure)[0].copy()
    box.gamma_slider.value = 0.99
    mdp = MDP.with_gamma(0.99)
    direct = gae_bias_variance(mdp, PI, 0.5 * evaluate_policy(mdp, PI), np.linspace(0, 1, 21), 40, 40, seed=0)
    np.testing.assert_allclose(_ys(box.figure)[0], direct["bias2"])
    assert not np.allclose(first, _ys(box.figure)[0])
    assert "gamma = 0.99" in box.figure.layout.title.text


def test_bad_arguments_raise():
    fig = _blank_figure()
    with pytest.raises(ValueError, match="lam"):
        update_gae_tradeoff(fig, MDP, PI, gamma=0.9, lam=1.5, **FAST_ARGS)
    with pytest.raises(ValueError, match="gamma"):
        update_gae_tradeoff(fig, MDP, PI, gamma=-0.1, lam=0.5, **FAST_ARGS)
    with pytest.raises(ValueError, match="gamma"):
        gae_tradeoff_sliders(MDP, PI, gamma=0.2, **FAST_ARGS)
    with pytest.raises(ValueError, match="pi"):
        update_gae_tradeoff(fig, MDP, np.ones((MDP.n_states, 2)), gamma=0.9, lam=0.5, **FAST_ARGS)
