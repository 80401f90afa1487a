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
