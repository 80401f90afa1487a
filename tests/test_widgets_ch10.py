"""The temperature slider redraws the next-token distribution (no kernel needed)."""

import math

import numpy as np
import plotly.graph_objects as go
import pytest

from course_lib.widgets import softmax_with_temperature, temperature_slider, update_temperature_bars

LOGITS = np.array([2.0, 1.0, 0.0, -1.0, 0.5])
LABELS = ["a", "b", "c", "d", "e"]


def _softmax_loop(z, T):
    w = [math.exp(v / T) for v in z]
    return [v / sum(w) for v in w]


@pytest.mark.parametrize("T", [0.1, 0.5, 1.0, 2.5])
def test_softmax_with_temperature_against_a_loop(T):
    np.testing.assert_allclose(softmax_with_temperature(LOGITS, T), _softmax_loop(LOGITS, T), rtol=1e-12)


def test_softmax_with_temperature_edges():
    np.testing.assert_array_equal(softmax_with_temperature(LOGITS, 0.0), [1, 0, 0, 0, 0])
    big = softmax_with_temperature(np.array([1000.0, 999.0]), 1.0)  # no overflow
    np.testing.assert_allclose(big, _softmax_loop([1.0, 0.0], 1.0))
    with pytest.raises(ValueError, match="temperature"):
        softmax_with_temperature(LOGITS, -0.5)


def test_moving_the_slider_redraws_the_bars_and_the_entropy():
    box = temperature_slider(LOGITS, LABELS, temperature=1.0)
    np.testing.assert_allclose(box.figure.data[0].y, _softmax_loop(LOGITS, 1.0))
    entropies = []
    for T in (0.0, 0.3, 1.0, 3.0):
        box.slider.value = T
        p = np.asarray(box.figure.data[0].y)
        expected = [1, 0, 0, 0, 0] if T == 0 else _softmax_loop(LOGITS, T)
        np.testing.assert_allclose(p, expected, atol=1e-12)
        H = -sum(v * math.log(v) for v in p if v > 0)
        assert f"{T:.2f}" in box.figure.layout.title.text and f"{H:.2f}" in box.figure.layout.title.text
        entropies.append(H)
    # Heating the distribution raises its entropy, towards ln V.
    assert entropies[0] == 0.0 and all(a < b for a, b in zip(entropies, entropies[1:]))
    assert entropies[-1] < math.log(5)


def test_callback_on_a_plain_figure():
    fig = go.Figure(go.Bar(x=LABELS, y=np.zeros(5)))
    p, H = update_temperature_bars(fig, LOGITS, 1e6)  # very hot: nearly uniform
    np.testing.assert_allclose(p, 0.2, atol=1e-5)
    assert H == pytest.approx(math.log(5), abs=1e-6)


def test_slider_rejects_bad_arguments():
    with pytest.raises(ValueError, match="labels"):
        temperature_slider(LOGITS, LABELS[:3])
    with pytest.raises(ValueError, match="temperature"):
        temperature_slider(LOGITS, LABELS, temperature=5.0)
