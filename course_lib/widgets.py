"""Sliders that redraw figures. Each callback is a plain function, testable without a kernel."""

from __future__ import annotations

import contextlib

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from .bellman import evaluate_policy
from .mdp import TabularMDP
from .plots import value_heatmap

__all__ = ["gamma_title", "update_value_heatmap", "gamma_slider_heatmap"]


def gamma_title(gamma: float) -> str:
    return f"V_pi for gamma = {gamma:.2f}"


def update_value_heatmap(fig: go.Figure, mdp: TabularMDP, pi, gamma: float) -> np.ndarray:
    """Redraw ``fig`` (made by ``value_heatmap``) with V_pi for discount ``gamma``; return that V.

    This is the slider's callback. It works on a plain ``go.Figure`` as well as
    on the ``go.FigureWidget`` the slider shows.
    """
    V = evaluate_policy(mdp.with_gamma(gamma), pi)
    grid = V.reshape(mdp.shape)
    lim = float(np.max(np.abs(grid))) or 1.0
    with fig.batch_update() if isinstance(fig, go.FigureWidget) else contextlib.nullcontext():
        fig.data[0].update(z=grid, zmin=-lim, zmax=lim)
        fig.layout.title.text = gamma_title(gamma)
    return V


def gamma_slider_heatmap(
    mdp: TabularMDP,
    pi,
    gamma: float = 0.9,
    min_gamma: float = 0.0,
    max_gamma: float = 0.99,
    step: float = 0.01,
) -> widgets.VBox:
    """A gamma slider above a heatmap of V_pi; moving the slider re-solves and redraws.

    The returned box exposes ``.slider`` and ``.figure`` so a test (or a
    curious student) can drive it from code.
    """
    if mdp.shape is None:
        raise ValueError("mdp must be a grid MDP (mdp.shape set) to draw a heatmap")
    if not min_gamma <= gamma <= max_gamma:
        raise ValueError(f"gamma must lie in [min_gamma, max_gamma] = [{min_gamma}, {max_gamma}]; got {gamma}")
    fig = go.FigureWidget(value_heatmap(np.zeros(mdp.n_states), mdp.shape))
    update_value_heatmap(fig, mdp, pi, gamma)
    slider = widgets.FloatSlider(
        value=gamma, min=min_gamma, max=max_gamma, step=step,
        description="gamma", continuous_update=True, readout_format=".2f",
        layout=widgets.Layout(width="420px"),
    )
    slider.observe(lambda change: update_value_heatmap(fig, mdp, pi, change["new"]), names="value")
    box = widgets.VBox([slider, fig])
    box.slider, box.figure = slider, fig
    return box


# ---------------------------------------------------------------------------
# Chapter 2: optimal values and optimal actions of a grid MDP as gamma moves.
# ---------------------------------------------------------------------------

__all__ += ["optimal_policy_title", "update_optimal_policy", "gamma_slider_optimal_policy"]


def optimal_policy_title(gamma: float) -> str:
    return f"V* and the optimal actions for gamma = {gamma:.2f}"


def _arrow_text(best: np.ndarray, skip: np.ndarray) -> list[str]:
    from .mdp import ACTION_ARROWS

    return ["" if k else "".join(a for a, ok in zip(ACTION_ARROWS, row) if ok) for row, k in zip(best, skip)]


def update_optimal_policy(fig: go.Figure, mdp: TabularMDP, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Redraw ``fig`` with V* and every optimal action for discount ``gamma``; return (V*, optimal (S, A) mask).

    ``fig`` is a ``value_heatmap`` with ``add_policy_arrows`` on top (trace 0 the
    heatmap, trace 1 the arrows), as ``gamma_slider_optimal_policy`` builds it.
    This is the slider's callback; it works on a plain ``go.Figure`` too.
    """
    from .bellman import optimal_actions, value_iteration

    solved = mdp.with_gamma(gamma)
    V, _ = value_iteration(solved)
    best = optimal_actions(solved, V)
    grid = V.reshape(mdp.shape)
    lim = float(np.max(np.abs(grid))) or 1.0
    with fig.batch_update() if isinstance(fig, go.FigureWidget) else contextlib.nullcontext():
        fig.data[0].update(z=grid, zmin=-lim, zmax=lim)
        fig.data[1].update(text=_arrow_text(best, mdp.terminal))
        fig.layout.title.text = optimal_policy_title(gamma)
    return V, best


def gamma_slider_optimal_policy(
    mdp: TabularMDP,
    gamma: float = 0.9,
    min_gamma: float = 0.0,
    max_gamma: float = 0.99,
    step: float = 0.01,
) -> widgets.VBox:
    """A gamma slider above V* with the optimal actions drawn as arrows; moving it re-solves by value iteration.

    gamma = 1 is left out of the default range: on a continuing task such as
    Sutton and Barto's Example 3.5 the values are then infinite. The returned
    box exposes ``.slider`` and ``.figure``.
    """
    from .plots import add_policy_arrows

    if mdp.shape is None or mdp.n_actions != 4:
        raise ValueError("mdp must be a grid MDP (mdp.shape set, 4 actions) to draw arrows on a heatmap")
    if not min_gamma <= gamma <= max_gamma:
        raise ValueError(f"gamma must lie in [min_gamma, max_gamma] = [{min_gamma}, {max_gamma}]; got {gamma}")
    base = value_heatmap(np.zeros(mdp.n_states), mdp.shape)
    add_policy_arrows(base, np.ones((mdp.n_states, 4)), mdp.shape, skip=mdp.terminal)
    fig = go.FigureWidget(base)
    update_optimal_policy(fig, mdp, gamma)
    slider = widgets.FloatSlider(
        value=gamma, min=min_gamma, max=max_gamma, step=step,
        description="gamma", continuous_update=False, readout_format=".2f",
        layout=widgets.Layout(width="420px"),
    )
    slider.observe(lambda change: update_optimal_policy(fig, mdp, change["new"]), names="value")
    box = widgets.VBox([slider, fig])
    box.slider, box.figure = slider, fig
    return box


# ---------------------------------------------------------------------------
# Chapter 4: SARSA against Q-learning on the cliff as epsilon moves.
# ---------------------------------------------------------------------------

__all__ += ["cliff_comparison", "cliff_figure", "update_cliff_figure", "epsilon_slider_cliff"]


def _modal_path(Qs: np.ndarray, mdp: TabularMDP, start: int) -> tuple[np.ndarray, int]:
    """The greedy path most runs take (ties: the one seen first), and how many runs take it."""
    from collections import Counter

    from .td import greedy_path

    counts = Counter(tuple(greedy_path(Q, mdp, start).tolist()) for Q in Qs)
    path, n = counts.most_common(1)[0]
    return np.array(path), n


def cliff_comparison(epsilon: float, n_runs: int = 20, n_episodes: int = 300, alpha: float = 0.5,
                     seed: int = 0, smooth: int = 10) -> dict:
    """Run SARSA and Q-learning on the cliff with the same settings; what the figure shows.

    Returns a dict with, for ``name`` in ("sarsa", "q_learning"): ``name + "_curve"``, the
    online return per episode averaged over the runs and then over a trailing window of
    ``smooth`` episodes, shape (n_episodes,); ``name + "_path"``, the greedy path most runs
    end with; ``name + "_path_runs"``, how many runs end with it; and ``epsilon``, ``n_runs``.
    """
    from .mdp import CLIFF_START, cliff_walking
    from .td import q_learning, sarsa

    if int(smooth) < 1:
        raise ValueError(f"smooth must be >= 1; got {smooth}")
    mdp = cliff_walking()
    out = {"epsilon": float(epsilon), "n_runs": int(n_runs)}
    for name, learner in (("sarsa", sarsa), ("q_learning", q_learning)):
        returns, Q = learner(mdp, CLIFF_START, n_episodes, n_runs=n_runs, alpha=alpha, epsilon=epsilon, seed=seed)
        mean = returns.mean(axis=0)
        csum = np.concatenate([[0.0], np.cumsum(mean)])
        lo = np.maximum(np.arange(1, n_episodes + 1) - smooth, 0)
        out[name + "_curve"] = (csum[1:] - csum[lo]) / (np.arange(1, n_episodes + 1) - lo)
        out[name + "_path"], out[name + "_path_runs"] = _modal_path(Q, mdp, CLIFF_START)
    return out


_CLIFF_COLOURS = {"sarsa": "#1f77b4", "q_learning": "#d62728"}
_CLIFF_NAMES = {"sarsa": "SARSA", "q_learning": "Q-learning"}


def cliff_title(comparison: dict) -> str:
    return f"Cliff walking, epsilon = {comparison['epsilon']:.2f}, mean of {comparison['n_runs']} runs"


def cliff_figure(comparison: dict) -> go.Figure:
    """Learning curves (left) and the two greedy paths on the grid (right).

    Traces: 0 and 1 the SARSA and Q-learning curves, 2 the grid, 3 and 4 the
    SARSA and Q-learning paths (``update_cliff_figure`` relies on this order).
    """
    from plotly.subplots import make_subplots

    from .mdp import CLIFF_CELLS, CLIFF_GOAL, CLIFF_SHAPE, CLIFF_START

    fig = make_subplots(rows=1, cols=2, column_widths=[0.45, 0.55], horizontal_spacing=0.08,
                        subplot_titles=("online return per episode", "greedy path at the end (the most common one)"))
    for name in ("sarsa", "q_learning"):
        curve = comparison[name + "_curve"]
        fig.add_trace(go.Scatter(x=np.arange(1, len(curve) + 1), y=curve, mode="lines", name=_CLIFF_NAMES[name],
                                 line=dict(color=_CLIFF_COLOURS[name])), row=1, col=1)
    n_rows, n_cols = CLIFF_SHAPE
    kind = np.zeros(n_rows * n_cols)
    kind[list(CLIFF_CELLS)] = -1.0
    kind[[CLIFF_START, CLIFF_GOAL]] = 1.0
    text = [""] * (n_rows * n_cols)
    for s in CLIFF_CELLS:
        text[s] = "cliff"
    text[CLIFF_START], text[CLIFF_GOAL] = "S", "G"
    fig.add_trace(go.Heatmap(z=kind.reshape(CLIFF_SHAPE), text=np.array(text).reshape(CLIFF_SHAPE), texttemplate="%{text}",
                             colorscale=[[0.0, "#7f7f7f"], [0.5, "#f7f7f7"], [1.0, "#bcdcb4"]], zmin=-1, zmax=1,
                             showscale=False, hoverinfo="skip"), row=1, col=2)
    for name in ("sarsa", "q_learning"):
        ys, xs = np.divmod(comparison[name + "_path"], n_cols)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", showlegend=False, hoverinfo="skip",
                                 line=dict(width=4, color=_CLIFF_COLOURS[name])), row=1, col=2)
    fig.update_yaxes(range=[n_rows - 0.5, -0.5], scaleanchor="x2", dtick=1, row=1, col=2)
    fig.update_xaxes(range=[-0.5, n_cols - 0.5], dtick=1, row=1, col=2)
    fig.update_xaxes(title="episode", row=1, col=1)
    fig.update_yaxes(title="sum of rewards during episode", range=[-120, 0], row=1, col=1)
    fig.update_layout(title=cliff_title(comparison), width=1000, height=380)
    return fig


def update_cliff_figure(fig: go.Figure, epsilon: float, n_runs: int = 20, n_episodes: int = 300,
                        alpha: float = 0.5, seed: int = 0) -> dict:
    """Re-run both learners at ``epsilon`` and redraw ``fig`` (made by ``cliff_figure``); return the comparison.

    The epsilon slider's callback; it works on a plain ``go.Figure`` as well.
    """
    comparison = cliff_comparison(epsilon, n_runs=n_runs, n_episodes=n_episodes, alpha=alpha, seed=seed)
    n_cols = fig.data[2].z.shape[1] if hasattr(fig.data[2].z, "shape") else len(fig.data[2].z[0])
    with fig.batch_update() if isinstance(fig, go.FigureWidget) else contextlib.nullcontext():
        for i, name in enumerate(("sarsa", "q_learning")):
            curve = comparison[name + "_curve"]
            fig.data[i].update(x=np.arange(1, len(curve) + 1), y=curve)
            ys, xs = np.divmod(comparison[name + "_path"], n_cols)
            fig.data[3 + i].update(x=xs, y=ys)
        fig.layout.title.text = cliff_title(comparison)
    return comparison


def epsilon_slider_cliff(epsilon: float = 0.1, n_runs: int = 20, n_episodes: int = 300, alpha: float = 0.5,
                         seed: int = 0, max_epsilon: float = 0.5, step: float = 0.05) -> widgets.VBox:
    """An epsilon slider above SARSA's and Q-learning's learning curves and greedy paths on the cliff.

    Letting go of the slider re-runs both learners (about a second for 20 runs). The
    returned box exposes ``.slider`` and ``.figure``.
    """
    if not 0.0 <= epsilon <= max_epsilon <= 1.0:
        raise ValueError(f"epsilon must lie in [0, max_epsilon] = [0, {max_epsilon}] with max_epsilon <= 1; got {epsilon}")
    fig = go.FigureWidget(cliff_figure(cliff_comparison(epsilon, n_runs=n_runs, n_episodes=n_episodes, alpha=alpha, seed=seed)))
    slider = widgets.FloatSlider(
        value=epsilon, min=0.0, max=max_epsilon, step=step,
        description="epsilon", continuous_update=False, readout_format=".2f",
        layout=widgets.Layout(width="420px"),
    )
    slider.observe(lambda change: update_cliff_figure(fig, change["new"], n_runs=n_runs, n_episodes=n_episodes,
                                                      alpha=alpha, seed=seed), names="value")
    box = widgets.VBox([slider, fig])
    box.slider, box.figure = slider, fig
    return box


# ---------------------------------------------------------------- chapter 9: the epsilon slider over PPO's clip
__all__ += ["update_clip_figure", "epsilon_slider_clip"]


def update_clip_figure(fig: go.Figure, eps: float) -> dict:
    """Redraw a ``clip_objective_figure`` for clip range ``eps``; return the curves drawn.

    The slider's callback; works on a plain ``go.Figure`` and on the ``go.FigureWidget`` it shows.
    """
    from .plots import clip_objective_curves

    eps = float(eps)
    if not 0 < eps < 1:
        raise ValueError(f"eps must be in (0, 1); got {eps}")
    r = np.asarray(fig.data[1].x, dtype=np.float64)
    curves = clip_objective_curves(eps, r)
    with fig.batch_update() if isinstance(fig, go.FigureWidget) else contextlib.nullcontext():
        fig.data[1].y, fig.data[2].y = curves["A>0"], curves["flat A>0"]
        fig.data[4].y, fig.data[5].y = curves["A<0"], curves["flat A<0"]
        for shape in fig.layout.shapes[:2]:
            shape.update(x0=1 - eps, x1=1 + eps)
        fig.layout.title.text = f"PPO's clipped objective, eps = {eps:.2f}"
    return curves


def epsilon_slider_clip(eps: float = 0.2, min_eps: float = 0.01, max_eps: float = 0.5, step: float = 0.01) -> widgets.VBox:
    """An epsilon slider above ``clip_objective_figure``; the box exposes ``.slider`` and ``.figure``."""
    from .plots import clip_objective_figure

    if not min_eps <= eps <= max_eps:
        raise ValueError(f"eps must lie in [min_eps, max_eps] = [{min_eps}, {max_eps}]; got {eps}")
    fig = go.FigureWidget(clip_objective_figure(eps))
    slider = widgets.FloatSlider(
        value=eps, min=min_eps, max=max_eps, step=step, description="epsilon",
        continuous_update=True, readout_format=".2f", layout=widgets.Layout(width="420px"),
    )
    slider.observe(lambda change: update_clip_figure(fig, change["new"]), names="value")
    box = widgets.VBox([slider, fig])
    box.slider, box.figure = slider, fig
    return box


# ---------------------------------------------------------------------------
# Chapter 7: lambda and gamma sliders over GAE's bias-variance trade-off.
# ---------------------------------------------------------------------------

__all__ += ["gae_tradeoff_curves", "update_gae_tradeoff", "gae_tradeoff_sliders"]

_GAE_LAMS = np.round(np.linspace(0.0, 1.0, 21), 10)  # the lambda grid the curves are computed on


def gae_tradeoff_curves(mdp: TabularMDP, pi, gamma: float, critic_scale: float = 0.5, n_per_pair: int = 200,
                        horizon: int = 80, seed: int = 0, lams=_GAE_LAMS) -> dict:
    """``course_lib.pg.gae_bias_variance`` for discount ``gamma`` and the critic V_hat = critic_scale * V_pi.

    A critic that has learned only part of the values (critic_scale < 1) is the imperfect critic
    of chapter 7; V_pi is re-solved for every gamma, so the critic follows the slider.
    """
    from .pg import gae_bias_variance

    mdp_g = mdp.with_gamma(gamma)
    V = evaluate_policy(mdp_g, pi)
    return gae_bias_variance(mdp_g, pi, critic_scale * V, lams, n_per_pair, horizon, seed)


def update_gae_tradeoff(fig: go.Figure, mdp: TabularMDP, pi, gamma: float, lam: float, critic_scale: float = 0.5,
                        n_average: int = 20, n_per_pair: int = 200, horizon: int = 80, seed: int = 0,
                        cache: dict | None = None) -> dict:
    """Redraw a ``gae_tradeoff_figure`` for ``gamma`` and ``lam``; return the curves (a dict, see below).

    The sliders' callback. Moving gamma recomputes the curves (sampling; results are kept in
    ``cache``, keyed by gamma, when one is given); moving lambda only moves the markers. The dict is
    ``gae_tradeoff_curves``'s plus ``"at_lam"``: (bias^2, variance of a mean, MSE) at ``lam``.
    Works on a plain ``go.Figure`` and on the ``go.FigureWidget`` the sliders show.
    """
    from .plots import gae_tradeoff_title

    lam, gamma = float(lam), float(gamma)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1]; got {lam}")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1]; got {gamma}")
    key = round(gamma, 10)
    if cache is not None and key in cache:
        curves = cache[key]
    else:
        curves = gae_tradeoff_curves(mdp, pi, gamma, critic_scale, n_per_pair, horizon, seed)
        if cache is not None:
            cache[key] = curves
    lams = curves["lams"]
    ys = (curves["bias2"], curves["variance"] / n_average, curves["bias2"] + curves["variance"] / n_average)
    at = tuple(float(np.interp(lam, lams, y)) for y in ys)
    with fig.batch_update() if isinstance(fig, go.FigureWidget) else contextlib.nullcontext():
        for i, y in enumerate(ys):
            fig.data[i].x, fig.data[i].y = lams, y
        fig.data[3].x, fig.data[3].y = [lam] * 3, list(at)
        fig.layout.title.text = gae_tradeoff_title(gamma, lam, at[0], at[1], n_average)
    return {**curves, "at_lam": at}


def gae_tradeoff_sliders(mdp: TabularMDP, pi, gamma: float = 0.9, lam: float = 0.9, critic_scale: float = 0.5,
                         n_average: int = 20, n_per_pair: int = 200, horizon: int = 80, seed: int = 0) -> widgets.VBox:
    """Sliders for lambda and gamma above the bias / variance / MSE curves of GAE on ``mdp``.

    The box exposes ``.lam_slider``, ``.gamma_slider`` and ``.figure`` so that a test (or a
    curious student) can drive it from code.
    """
    from .plots import gae_tradeoff_figure

    if not 0.5 <= gamma <= 1.0:
        raise ValueError(f"gamma must lie in [0.5, 1]; got {gamma}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1]; got {lam}")
    cache: dict = {}
    curves = gae_tradeoff_curves(mdp, pi, gamma, critic_scale, n_per_pair, horizon, seed)
    cache[round(float(gamma), 10)] = curves
    fig = go.FigureWidget(gae_tradeoff_figure(curves["lams"], curves["bias2"], curves["variance"], n_average, gamma, lam))
    lam_slider = widgets.FloatSlider(value=lam, min=0.0, max=1.0, step=0.05, description="lambda",
                                     continuous_update=False, readout_format=".2f", layout=widgets.Layout(width="420px"))
    gamma_slider = widgets.FloatSlider(value=gamma, min=0.5, max=1.0, step=0.01, description="gamma",
                                       continuous_update=False, readout_format=".2f", layout=widgets.Layout(width="420px"))

    def redraw(_change=None):
        update_gae_tradeoff(fig, mdp, pi, gamma_slider.value, lam_slider.value, critic_scale, n_average, n_per_pair,
                            horizon, seed, cache)

    lam_slider.observe(redraw, names="value")
    gamma_slider.observe(redraw, names="value")
    box = widgets.VBox([lam_slider, gamma_slider, fig])
    box.lam_slider, box.gamma_slider, box.figure = lam_slider, gamma_slider, fig
    return box


# ---------------------------------------------------------------- chapter 10: temperature
__all__ += ["softmax_with_temperature", "update_temperature_bars", "temperature_slider"]


def softmax_with_temperature(logits, temperature: float) -> np.ndarray:
    """softmax(logits / temperature) over the last axis; temperature 0 puts all mass on the argmax.

    >>> softmax_with_temperature(np.array([2.0, 1.0, 0.0]), 1.0).round(3)
    array([0.665, 0.245, 0.09 ])
    """
    z = np.asarray(logits, dtype=np.float64)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    if temperature == 0:
        return (np.arange(z.shape[-1]) == np.argmax(z, axis=-1)[..., None]).astype(np.float64)
    z = z / temperature
    z = z - z.max(axis=-1, keepdims=True)  # exp of large logits would overflow
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


def _entropy(p: np.ndarray) -> float:
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum())


def update_temperature_bars(fig: go.Figure, logits, temperature: float) -> tuple[np.ndarray, float]:
    """Redraw the bars of ``fig`` with softmax(logits / temperature); return (probabilities, entropy in nats).

    The slider's callback; works on a plain ``go.Figure`` as well as a ``go.FigureWidget``.
    """
    p = softmax_with_temperature(logits, temperature)
    H = _entropy(p)
    with fig.batch_update() if isinstance(fig, go.FigureWidget) else contextlib.nullcontext():
        fig.data[0].y = p
        fig.layout.title.text = f"pi(a | s) at temperature {temperature:.2f}: entropy {H:.2f} nats (max {np.log(len(p)):.2f})"
    return p, H


def temperature_slider(logits, labels, temperature: float = 1.0, min_temperature: float = 0.0,
                       max_temperature: float = 3.0, step: float = 0.05) -> widgets.VBox:
    """A temperature slider above a bar chart of the next-token distribution softmax(logits / T).

    ``logits`` (V,) are one state's next-token logits and ``labels`` (V,) the
    tokens' printable names. The box exposes ``.slider`` and ``.figure``.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 1 or len(labels) != len(logits):
        raise ValueError(f"logits must have shape (V,) and labels V entries; got {logits.shape} and {len(labels)}")
    if not min_temperature <= temperature <= max_temperature:
        raise ValueError(f"temperature must lie in [min_temperature, max_temperature] = [{min_temperature}, {max_temperature}]; got {temperature}")
    fig = go.FigureWidget(go.Bar(x=list(labels), y=np.zeros(len(logits))))
    fig.update_layout(yaxis=dict(range=[0, 1], title="probability"), xaxis=dict(title="next token", type="category"),
                      width=760, height=360, margin=dict(l=50, r=20, t=50, b=40))
    update_temperature_bars(fig, logits, temperature)
    slider = widgets.FloatSlider(
        value=temperature, min=min_temperature, max=max_temperature, step=step,
        description="temperature", continuous_update=True, readout_format=".2f",
        layout=widgets.Layout(width="420px"), style={"description_width": "initial"},
    )
    slider.observe(lambda change: update_temperature_bars(fig, logits, change["new"]), names="value")
    box = widgets.VBox([slider, fig])
    box.slider, box.figure = slider, fig
    return box


# ---------------------------------------------------------------- chapter 13: group size
__all__ += ["group_size_curves", "update_group_size_figure", "group_size_slider"]


def group_size_curves(group_size: int, p=None) -> dict:
    """What a group of G completions tells GRPO about a prompt solved with probability p.

    Returns a dict of arrays over ``p`` (default 99 points in (0, 1)): "p"; "all_equal", the
    chance p^G + (1-p)^G that the group carries no signal; "mean" and "std", the exact mean
    and std of a correct completion's standardised advantage; "population", the value
    sqrt((1 - p) / p) it would have if the group knew p exactly.
    """
    from .grpo import all_equal_probability, bernoulli_advantage_moments

    p = np.linspace(0.01, 0.99, 99) if p is None else np.asarray(p, dtype=np.float64)
    mean, std = bernoulli_advantage_moments(p, group_size)
    return {"p": p, "all_equal": all_equal_probability(p, group_size), "mean": mean, "std": std,
            "population": np.sqrt((1 - p) / p)}


def update_group_size_figure(fig: go.Figure, group_size: int) -> dict:
    """Redraw ``fig`` (made by ``group_size_slider``) for group size G; return the curves drawn.

    Traces: 0 the all-equal probability, 1 the advantage's mean, 2 and 3 mean +- std (a band),
    4 the population value. Works on a plain ``go.Figure`` and on a ``go.FigureWidget``.
    """
    c = group_size_curves(group_size)
    with fig.batch_update() if isinstance(fig, go.FigureWidget) else contextlib.nullcontext():
        fig.data[0].update(x=c["p"], y=c["all_equal"])
        fig.data[1].update(x=c["p"], y=c["mean"])
        fig.data[2].update(x=c["p"], y=c["mean"] + c["std"])
        fig.data[3].update(x=c["p"], y=np.maximum(c["mean"] - c["std"], 0.0))
        fig.data[4].update(x=c["p"], y=c["population"])
        at_half = float(np.interp(0.5, c["p"], c["std"]))
        fig.layout.title.text = (f"G = {group_size}: a group at p = 0.5 is all-equal with probability {0.5 ** (group_size - 1):.3f};"
                                 f" std of a correct completion's advantage there {at_half:.3f}")
    return c


def group_size_slider(group_size: int = 8, min_group_size: int = 2, max_group_size: int = 64) -> widgets.VBox:
    """A slider over GRPO's group size G above two panels against the success probability p.

    Left: the chance that all G rewards are equal (no signal). Right: the standardised
    advantage of a correct completion, mean +- std over groups, against sqrt((1-p)/p).
    The box exposes ``.slider`` and ``.figure``.
    """
    from plotly.subplots import make_subplots

    if not min_group_size <= group_size <= max_group_size:
        raise ValueError(f"group_size must lie in [{min_group_size}, {max_group_size}]; got {group_size}")
    base = make_subplots(rows=1, cols=2, subplot_titles=("P(all G rewards equal) = p^G + (1-p)^G",
                                                         "advantage of a correct completion"))
    fig = go.FigureWidget(base)
    fig.add_trace(go.Scatter(name="all equal", line=dict(color="firebrick")), row=1, col=1)
    fig.add_trace(go.Scatter(name="mean", line=dict(color="royalblue")), row=1, col=2)
    fig.add_trace(go.Scatter(name="mean + std", line=dict(width=0), showlegend=False), row=1, col=2)
    fig.add_trace(go.Scatter(name="mean +- std", line=dict(width=0), fill="tonexty", fillcolor="rgba(65,105,225,0.2)"), row=1, col=2)
    fig.add_trace(go.Scatter(name="sqrt((1-p)/p)", line=dict(color="black", dash="dash")), row=1, col=2)
    fig.update_xaxes(title_text="success probability p of the prompt")
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_yaxes(range=[0, 6], row=1, col=2)
    fig.update_layout(width=980, height=400, margin=dict(l=50, r=20, t=70, b=40))
    update_group_size_figure(fig, group_size)
    slider = widgets.IntSlider(value=group_size, min=min_group_size, max=max_group_size, step=1, description="group size G",
                               continuous_update=True, layout=widgets.Layout(width="420px"),
                               style={"description_width": "initial"})
    slider.observe(lambda change: update_group_size_figure(fig, change["new"]), names="value")
    box = widgets.VBox([slider, fig])
    box.slider, box.figure = slider, fig
    return box


# ---------------------------------------------------------------- chapter 14: beta of the KL-regularised optimum
__all__ += ["kl_optimum_title", "update_kl_optimum_bars", "beta_slider_kl_optimum"]


def kl_optimum_title(pi: np.ndarray, pi_ref: np.ndarray, rewards: np.ndarray, beta: float) -> str:
    """The title over the bars: beta, the expected reward under pi* and its KL to pi_ref (nats)."""
    keep = pi > 0
    kl = float((pi[keep] * np.log(pi[keep] / pi_ref[keep])).sum())
    return f"beta = {beta:.2f}: E[r] under pi* = {float(pi @ rewards):+.2f} (pi_ref: {float(pi_ref @ rewards):+.2f}), KL(pi* || pi_ref) = {kl:.2f} nats"


def update_kl_optimum_bars(fig: go.Figure, pi_ref, rewards, beta: float) -> np.ndarray:
    """Redraw trace 1 of ``fig`` with pi* = pi_ref exp(r / beta) / Z; return pi*. Works on go.Figure and FigureWidget."""
    from .dpo import kl_optimal_policy

    pi_ref, rewards = np.asarray(pi_ref, dtype=np.float64), np.asarray(rewards, dtype=np.float64)
    pi = kl_optimal_policy(pi_ref, rewards, beta)
    with fig.batch_update() if isinstance(fig, go.FigureWidget) else contextlib.nullcontext():
        fig.data[1].y = pi
        fig.layout.title.text = kl_optimum_title(pi, pi_ref, rewards, beta)
    return pi


def beta_slider_kl_optimum(pi_ref, rewards, labels, beta: float = 1.0, min_beta: float = 0.05, max_beta: float = 5.0,
                           step: float = 0.05) -> widgets.VBox:
    """A beta slider above bars of pi_ref and of the KL-regularised optimum pi* over K completions.

    ``pi_ref`` (K,) and ``rewards`` (K,) describe one prompt's completions, ``labels`` (K,) name them.
    The box exposes ``.slider`` and ``.figure``.
    """
    pi_ref, rewards = np.asarray(pi_ref, dtype=np.float64), np.asarray(rewards, dtype=np.float64)
    if pi_ref.ndim != 1 or rewards.shape != pi_ref.shape or len(labels) != len(pi_ref):
        raise ValueError(f"pi_ref, rewards and labels must have K entries each; got {pi_ref.shape}, {rewards.shape}, {len(labels)}")
    if not min_beta <= beta <= max_beta or min_beta <= 0:
        raise ValueError(f"beta must lie in [min_beta, max_beta] = [{min_beta}, {max_beta}] with min_beta > 0; got {beta}")
    names = [f"{lab} (r={r:+.1f})" for lab, r in zip(labels, rewards)]
    fig = go.FigureWidget([go.Bar(x=names, y=pi_ref, name="pi_ref", marker_color="lightgray"),
                           go.Bar(x=names, y=pi_ref, name="pi* = pi_ref exp(r / beta) / Z", marker_color="#1f77b4")])
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], title="probability"), width=820, height=380,
                      margin=dict(l=50, r=20, t=50, b=40))
    update_kl_optimum_bars(fig, pi_ref, rewards, beta)
    slider = widgets.FloatSlider(value=beta, min=min_beta, max=max_beta, step=step, description="beta",
                                 continuous_update=True, readout_format=".2f", layout=widgets.Layout(width="420px"),
                                 style={"description_width": "initial"})
    slider.observe(lambda change: update_kl_optimum_bars(fig, pi_ref, rewards, change["new"]), names="value")
    box = widgets.VBox([slider, fig])
    box.slider, box.figure = slider, fig
    return box
