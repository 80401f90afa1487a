"""The epsilon slider redraws PPO's clipped objective for the new clip range (no kernel needed)."""

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib.plots import clip_objective_figure
from course_lib.widgets import epsilon_slider_clip, update_clip_figure


def clipped_loop(r, A, eps):
    # min(r A, clip(r, 1 - eps, 1 + eps) A), one ratio at a time.
    return np.array([min(x * A, min(max(x, 1 - eps), 1 + eps) * A) for x in r])


def _y(fig, i):
    return np.asarray(fig.data[i].y, dtype=float)


def test_moving_the_slider_redraws_both_panels():
    box = epsilon_slider_clip(eps=0.2)
    r = np.asarray(box.figure.data[1].x, dtype=float)
    before = _y(box.figure, 1).copy()
    for eps in (0.05, 0.3, 0.5):
        box.slider.value = eps
        np.testing.assert_allclose(_y(box.figure, 1), clipped_loop(r, 1.0, eps))
        np.testing.assert_allclose(_y(box.figure, 4), clipped_loop(r, -1.0, eps))
        band = box.figure.layout.shapes[0]
        assert (band.x0, band.x1) == pytest.approx((1 - eps, 1 + eps))
        assert f"{eps:.2f}" in box.figure.layout.title.text
    assert not np.allclose(_y(box.figure, 1), before)


def test_flat_parts_are_where_the_clip_is_active():
    fig = go.Figure(clip_objective_figure(0.2))
    curves = update_clip_figure(fig, 0.25)
    r = np.asarray(fig.data[1].x, dtype=float)
    flat_pos, flat_neg = _y(fig, 2), _y(fig, 5)
    # A > 0: flat at 1 + eps above the band, nowhere below it (a ratio that fell is pulled back up).
    np.testing.assert_array_equal(~np.isnan(flat_pos), r > 1.25)
    np.testing.assert_allclose(flat_pos[r > 1.25], 1.25)
    # A < 0: flat at -(1 - eps) below the band, and never above it (the min keeps r A there).
    np.testing.assert_array_equal(~np.isnan(flat_neg), r < 0.75)
    np.testing.assert_allclose(flat_neg[r < 0.75], -0.75)
    np.testing.assert_allclose(curves["A<0"][r > 1.25], -r[r > 1.25])


def test_unclipped_reference_lines_do_not_move():
    fig = go.Figure(clip_objective_figure(0.2))
    r = np.asarray(fig.data[0].x, dtype=float)
    update_clip_figure(fig, 0.4)
    np.testing.assert_allclose(_y(fig, 0), r)
    np.testing.assert_allclose(_y(fig, 3), -r)


def test_bad_epsilon():
    with pytest.raises(ValueError, match="eps"):
        epsilon_slider_clip(eps=0.9)
    with pytest.raises(ValueError, match="eps"):
        update_clip_figure(go.Figure(clip_objective_figure(0.2)), 0.0)
