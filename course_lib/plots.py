"""Plotly figures the chapters share: value heatmaps on a grid, convergence curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go
from plotly.subplots import make_subplots

__all__ = ["value_heatmap", "heatmaps_side_by_side", "convergence_plot", "add_policy_arrows", "add_path"]

_COLORSCALE = "RdBu"


def _heatmap_trace(values: np.ndarray, shape: tuple[int, int], fmt: str, **kwargs) -> go.Heatmap:
    grid = np.asarray(values, dtype=np.float64).reshape(shape)
    lim = float(np.max(np.abs(grid))) or 1.0
    return go.Heatmap(
        z=grid,
        # The text is a template over z, so a callback that replaces z also
        # updates the numbers printed in the cells.
        texttemplate="%{z:" + fmt + "}",
        colorscale=_COLORSCALE,
        zmid=0.0,
        zmin=-lim,
        zmax=lim,
        hovertemplate="row %{y}, col %{x}<br>V = %{z:.3f}<extra></extra>",
        **kwargs,
    )


def value_heatmap(values, shape: tuple[int, int], title: str = "", fmt: str = ".1f") -> go.Figure:
    """A grid of state values, row 0 at the top, each cell labelled with its value.

    ``values`` has shape (S,) with S = n_rows * n_cols (state = row * n_cols + col).
    """
    values = np.asarray(values)
    if values.size != shape[0] * shape[1]:
        raise ValueError(f"values has {values.size} entries but shape {shape} needs {shape[0] * shape[1]}")
    fig = go.Figure(_heatmap_trace(values, shape, fmt))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", dtick=1)
    fig.update_xaxes(constrain="domain", dtick=1)
    fig.update_layout(title=title, width=460, height=420, margin=dict(l=30, r=30, t=50, b=30))
    return fig


def heatmaps_side_by_side(panels: Mapping[str, np.ndarray], shape: tuple[int, int], title: str = "", fmt: str = ".1f") -> go.Figure:
    """Several value grids in one row, on one shared colour scale (e.g. ours next to the book's)."""
    names = list(panels)
    lim = max(float(np.max(np.abs(np.asarray(v)))) for v in panels.values()) or 1.0
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.08)
    for i, name in enumerate(names, start=1):
        trace = _heatmap_trace(np.asarray(panels[name]), shape, fmt, showscale=(i == len(names)))
        trace.update(zmin=-lim, zmax=lim)
        fig.add_trace(trace, row=1, col=i)
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{i}", dtick=1, row=1, col=i)
        fig.update_xaxes(dtick=1, row=1, col=i)
    fig.update_layout(title=title, width=380 * len(names), height=400, margin=dict(l=30, r=30, t=80, b=30))
    return fig


def convergence_plot(
    curves: Mapping[str, Sequence[float]],
    title: str = "",
    xaxis: str = "sweep",
    yaxis: str = "max |V_k - V|",
    bounds: Mapping[str, Sequence[float]] | None = None,
) -> go.Figure:
    """Error per iteration on a log scale, one line per label.

    ``bounds[label]``, if given, is drawn dashed in the colour of that label's curve
    (e.g. the contraction bound gamma^k * error_0 next to the measured error).
    """
    palette = px.colors.qualitative.Plotly
    fig = go.Figure()
    for i, (name, errors) in enumerate(curves.items()):
        color = palette[i % len(palette)]
        errors = np.asarray(errors, dtype=np.float64)
        fig.add_trace(go.Scatter(x=np.arange(1, len(errors) + 1), y=errors, mode="lines", name=name, line=dict(color=color)))
        if bounds is not None and name in bounds:
            bound = np.asarray(bounds[name], dtype=np.float64)
            fig.add_trace(go.Scatter(
                x=np.arange(1, len(bound) + 1), y=bound, mode="lines", name=f"bound, {name}",
                line=dict(color=color, dash="dash", width=1),
            ))
    fig.update_yaxes(type="log", title=yaxis, exponentformat="power")
    fig.update_xaxes(title=xaxis)
    fig.update_layout(title=title, width=700, height=420)
    return fig


_ARROWS = ("↑", "→", "↓", "←")  # actions 0..3 = up, right, down, left (course_lib.mdp.ACTIONS)


def add_policy_arrows(fig: go.Figure, pi, shape: tuple[int, int], skip=None, row=None, col=None) -> go.Figure:
    """Write the greedy action of ``pi`` (shape (S, 4)) as an arrow in each grid cell.

    Ties (several actions with the top probability) show every tied arrow.
    ``skip`` is a boolean (S,) mask of cells left blank (terminal states).
    Put it on a ``value_heatmap`` to see values and policy together.
    """
    pi = np.asarray(pi, dtype=np.float64)
    n_rows, n_cols = shape
    if pi.shape != (n_rows * n_cols, 4):
        raise ValueError(f"pi must have shape (S, 4) = ({n_rows * n_cols}, 4); got {pi.shape}")
    best = pi >= pi.max(axis=1, keepdims=True) - 1e-9
    text = ["".join(a for a, b in zip(_ARROWS, row_best) if b) for row_best in best]
    if skip is not None:
        text = ["" if k else t for t, k in zip(text, np.asarray(skip, dtype=bool))]
    ys, xs = np.divmod(np.arange(n_rows * n_cols), n_cols)
    fig.add_trace(
        go.Scatter(x=xs, y=ys, mode="text", text=text, textfont=dict(size=22), hoverinfo="skip", showlegend=False),
        row=row, col=col,
    )
    return fig


def add_path(fig: go.Figure, states, shape: tuple[int, int], name: str, color: str | None = None, row=None, col=None) -> go.Figure:
    """Draw a sequence of grid states (state = row * n_cols + col) as a line through cell centres."""
    ys, xs = np.divmod(np.asarray(states, dtype=int), shape[1])
    fig.add_trace(
        go.Scatter(x=xs, y=ys, mode="lines+markers", name=name, line=dict(width=4, color=color)),
        row=row, col=col,
    )
    return fig


# ---------------------------------------------------------------- chapter 9: PPO's clipped objective
__all__ += ["clip_objective_curves", "clip_objective_figure"]


def clip_objective_curves(eps: float, ratio) -> dict:
    """The clipped objective min(r A, clip(r, 1 - eps, 1 + eps) A) at A = +1 and A = -1, and where it is flat.

    ratio: 1-D array of r values. Returns a dict of arrays of the shape of ratio:
    ``"A>0"`` and ``"A<0"`` (the objective), and ``"flat A>0"``/``"flat A<0"``: the
    objective where its derivative in r is 0 (the clip is active), NaN elsewhere.
    """
    from .losses import ppo_clip_objective

    r = np.asarray(ratio, dtype=np.float64)
    pos = ppo_clip_objective(r, np.ones_like(r), eps)
    neg = ppo_clip_objective(r, -np.ones_like(r), eps)
    return {
        "A>0": pos,
        "A<0": neg,
        "flat A>0": np.where(r > 1 + eps, pos, np.nan),
        "flat A<0": np.where(r < 1 - eps, neg, np.nan),
    }


def clip_objective_figure(eps: float, ratio_max: float = 2.5, n_points: int = 501) -> go.Figure:
    """Two panels, A = +1 and A = -1: the plain surrogate r A, PPO's clipped objective, and its flat part.

    The shaded band is the clip range [1 - eps, 1 + eps]; on the red segments the objective
    no longer depends on r, so a sample there contributes no gradient.
    Traces 0-2 are the A > 0 panel (r A, clipped, flat), traces 3-5 the A < 0 panel;
    shapes 0 and 1 are the two bands (``course_lib.widgets.update_clip_figure`` relies on this order).
    """
    r = np.linspace(0.0, ratio_max, n_points)
    curves = clip_objective_curves(eps, r)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("advantage A = +1", "advantage A = -1"), horizontal_spacing=0.1)
    for col, sign, key in ((1, 1.0, "A>0"), (2, -1.0, "A<0")):
        fig.add_trace(go.Scatter(x=r, y=sign * r, mode="lines", name="r A (no clip)", line=dict(dash="dash", color="gray"),
                                 showlegend=(col == 1)), row=1, col=col)
        fig.add_trace(go.Scatter(x=r, y=curves[key], mode="lines", name="min(r A, clip(r) A)", line=dict(width=3, color="#1f77b4"),
                                 showlegend=(col == 1)), row=1, col=col)
        fig.add_trace(go.Scatter(x=r, y=curves["flat " + key], mode="lines", name="flat: no gradient",
                                 line=dict(width=6, color="#d62728"), showlegend=(col == 1)), row=1, col=col)
    for col in (1, 2):
        fig.add_vrect(x0=1 - eps, x1=1 + eps, fillcolor="green", opacity=0.12, line_width=0, row=1, col=col)
    fig.update_xaxes(title="ratio r = pi_new(a|s) / pi_old(a|s)", range=[0, ratio_max])
    fig.update_yaxes(title="objective", range=[-ratio_max - 0.1, ratio_max + 0.1])
    fig.update_layout(title=f"PPO's clipped objective, eps = {eps:.2f}", width=900, height=420)
    return fig


# ---------------------------------------------------------------- chapter 7: GAE's bias-variance trade-off
__all__ += ["gae_tradeoff_title", "gae_tradeoff_figure"]


def gae_tradeoff_title(gamma: float, lam: float, bias2: float, var_of_mean: float, n_average: int) -> str:
    return (f"gamma = {gamma:.2f}, lambda = {lam:.2f}: bias^2 {bias2:.2e} + variance of a mean of {n_average} "
            f"{var_of_mean:.2e} = MSE {bias2 + var_of_mean:.2e}")


def gae_tradeoff_figure(lams, bias2, variance, n_average: int, gamma: float, lam: float) -> go.Figure:
    """Bias squared, variance of a mean of ``n_average`` estimates, and their sum (the MSE), against lambda.

    lams, bias2, variance: arrays of shape (L,) (``course_lib.pg.gae_bias_variance`` gives them;
    ``variance`` is that of one estimate). A marker on each curve shows the current ``lam``.
    Traces, in order: 0 bias^2, 1 variance / n_average, 2 MSE, 3 the markers at ``lam``
    (``course_lib.widgets.update_gae_tradeoff`` relies on this order).
    """
    lams = np.asarray(lams, dtype=np.float64)
    bias2 = np.asarray(bias2, dtype=np.float64)
    var_mean = np.asarray(variance, dtype=np.float64) / n_average
    mse = bias2 + var_mean
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lams, y=bias2, mode="lines", name="bias^2 (action-dependent part)", line=dict(width=3)))
    fig.add_trace(go.Scatter(x=lams, y=var_mean, mode="lines", name=f"variance of a mean of {n_average} estimates",
                             line=dict(width=3)))
    fig.add_trace(go.Scatter(x=lams, y=mse, mode="lines", name="MSE = bias^2 + variance", line=dict(width=3, dash="dash",
                                                                                                     color="black")))
    at = [float(np.interp(lam, lams, y)) for y in (bias2, var_mean, mse)]
    fig.add_trace(go.Scatter(x=[lam] * 3, y=at, mode="markers", name="current lambda",
                             marker=dict(size=12, color="black", symbol="diamond")))
    fig.update_xaxes(title="lambda", range=[-0.02, 1.02])
    fig.update_yaxes(title="squared error of the advantage estimate", rangemode="tozero")
    fig.update_layout(title=gae_tradeoff_title(gamma, lam, at[0], at[1], n_average), width=800, height=440)
    return fig


# ---------------------------------------------------------------- chapter 12: live RLHF curves
__all__ += ["training_dashboard", "update_training_dashboard"]


def training_dashboard(panels: Sequence[tuple[str, Sequence[str]]], title: str = "", cols: int = 3,
                       live: bool = True) -> go.Figure:
    """Empty subplots for curves that grow during training, one panel per (panel title, history keys).

    A ``go.FigureWidget`` (``live=True``), which redraws in JupyterLab while a cell still
    runs, or a plain ``go.Figure``. Each key gets one line trace named after it, in the
    order given; ``update_training_dashboard`` fills them from a history dict.
    """
    if not panels:
        raise ValueError("panels must name at least one (title, keys) panel")
    rows = -(-len(panels) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[name for name, _ in panels])
    for i, (_, keys) in enumerate(panels):
        for key in keys:
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=key), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(title="step", row=rows)
    fig.update_layout(title=title, width=320 * cols, height=260 * rows + 80, showlegend=True)
    return go.FigureWidget(fig) if live else fig


def update_training_dashboard(fig: go.Figure, history: Mapping[str, Sequence[float]]) -> int:
    """Set each trace of ``fig`` to ``history[trace name]`` (traces whose key is missing stay as they are).

    The training loop's callback: cheap enough to run every step. Returns the number of
    traces updated.
    """
    import contextlib

    updated = 0
    with fig.batch_update() if isinstance(fig, go.FigureWidget) else contextlib.nullcontext():
        for trace in fig.data:
            values = history.get(trace.name)
            if values is None:
                continue
            trace.x = list(range(len(values)))
            trace.y = list(values)
            updated += 1
    return updated
