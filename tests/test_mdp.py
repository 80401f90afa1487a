"""Tests for course_lib.mdp: TabularMDP validation and the two textbook gridworlds.

The gridworld expectations are written from the rules in Sutton and Barto
(2018), Examples 3.5 and 4.1, as explicit hand-picked transitions, so that a
mistake in the vectorised table construction cannot hide behind the same
mistake in the test.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from course_lib.mdp import TabularMDP, small_gridworld, sutton_barto_gridworld

UP, RIGHT, DOWN, LEFT = 0, 1, 2, 3


def valid_arrays():
    """A small valid MDP (3 states, 2 actions) that each bad case perturbs once."""
    P = np.array(
        [
            [[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]],
            [[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]],
            [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],
        ]
    )
    R = np.array([[1.0, -1.0], [0.0, 2.0], [0.0, 0.0]])
    terminal = np.array([False, False, True])
    return P, R, terminal


def test_valid_mdp_constructs():
    P, R, terminal = valid_arrays()
    mdp = TabularMDP(P, R, 0.9, terminal=terminal)
    assert (mdp.n_states, mdp.n_actions) == (3, 2)
    assert mdp.gamma == 0.9
    assert_array_equal(mdp.terminal, terminal)


def test_terminal_defaults_to_none_terminal():
    P, R, _ = valid_arrays()
    mdp = TabularMDP(P, R, 0.5)
    assert mdp.terminal.dtype == bool
    assert_array_equal(mdp.terminal, [False, False, False])


def test_nested_lists_are_accepted():
    # Notebook users write small MDPs as literals; they should not need np.array.
    P, R, terminal = valid_arrays()
    mdp = TabularMDP(P.tolist(), R.tolist(), 1.0, terminal=terminal.tolist())
    assert_allclose(mdp.P, P)
    assert_allclose(mdp.R, R)


@pytest.mark.parametrize("gamma", [0.0, 1.0, 0.5])
def test_gamma_bounds_are_inclusive(gamma):
    # 0 (myopic) and 1 (undiscounted episodic) are both legal in the book.
    P, R, terminal = valid_arrays()
    assert TabularMDP(P, R, gamma, terminal=terminal).gamma == gamma


def _row_not_summing_to_one():
    P, R, t = valid_arrays()
    P[1, 0] = [0.5, 0.4, 0.0]
    return dict(P=P, R=R, gamma=0.9, terminal=t)


def _row_summing_to_more_than_one():
    P, R, t = valid_arrays()
    P[0, 1] = [0.0, 0.5, 1.0]
    return dict(P=P, R=R, gamma=0.9, terminal=t)


def _negative_probability():
    # The row still sums to 1, so only the sign check can catch it.
    P, R, t = valid_arrays()
    P[0, 1] = [1.5, -0.5, 0.0]
    return dict(P=P, R=R, gamma=0.9, terminal=t)


def _nan_in_P():
    P, R, t = valid_arrays()
    P[0, 0, 0] = np.nan
    return dict(P=P, R=R, gamma=0.9, terminal=t)


def _gamma(g):
    def make():
        P, R, t = valid_arrays()
        return dict(P=P, R=R, gamma=g, terminal=t)

    return make


def _R_shape(shape):
    def make():
        P, _, t = valid_arrays()
        return dict(P=P, R=np.zeros(shape), gamma=0.9, terminal=t)

    return make


def _terminal(value):
    def make():
        P, R, _ = valid_arrays()
        return dict(P=P, R=R, gamma=0.9, terminal=value)

    return make


def _P_shape(P):
    def make():
        return dict(P=P, R=np.zeros((3, 2)), gamma=0.9)

    return make


# Each case: (id, builder of kwargs, regex the message must match). The regex
# names the offending argument as a whole word, so "P" does not match "pi" etc.
BAD_INPUTS = [
    ("P row sums to 0.9", _row_not_summing_to_one, r"\bP\b.*sum"),
    ("P row sums to 1.5", _row_summing_to_more_than_one, r"\bP\b.*sum"),
    ("P negative entry", _negative_probability, r"\bP\b.*>= 0|\bP\b.*negative"),
    ("P has NaN", _nan_in_P, r"\bP\b"),
    ("gamma < 0", _gamma(-0.1), r"\bgamma\b"),
    ("gamma > 1", _gamma(1.0 + 1e-6), r"\bgamma\b"),
    ("gamma NaN", _gamma(float("nan")), r"\bgamma\b"),
    ("R 1-D", _R_shape((3,)), r"\bR\b"),
    ("R transposed", _R_shape((2, 3)), r"\bR\b"),
    ("R one row short", _R_shape((2, 2)), r"\bR\b"),
    ("terminal too short", _terminal(np.array([False, True])), r"\bterminal\b"),
    ("terminal 2-D", _terminal(np.zeros((3, 1), dtype=bool)), r"\bterminal\b"),
    ("terminal int dtype", _terminal(np.array([0, 0, 1])), r"\bterminal\b"),
    ("terminal float dtype", _terminal(np.array([0.0, 0.0, 1.0])), r"\bterminal\b"),
    ("P 2-D", _P_shape(np.eye(3)), r"\bP\b"),
    ("P 4-D", _P_shape(np.ones((3, 2, 3, 1)) / 3), r"\bP\b"),
    ("P 1-D", _P_shape(np.ones(3) / 3), r"\bP\b"),
    ("P last axis != first", _P_shape(np.full((3, 2, 4), 0.25)), r"\bP\b"),
]


@pytest.mark.parametrize("make, pattern", [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_raises_value_error_naming_argument(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        TabularMDP(**make())


def test_bad_row_message_points_at_the_row():
    # A learner with a 100-row table needs to know which row is wrong.
    with pytest.raises(ValueError, match=re.escape("P[1, 0, :]")):
        TabularMDP(**_row_not_summing_to_one())


def test_bad_shape_keyword_raises():
    P, R, t = valid_arrays()
    with pytest.raises(ValueError, match=r"\bshape\b"):
        TabularMDP(P, R, 0.9, terminal=t, shape=(2, 2))


@pytest.mark.parametrize("name", ["P", "R", "terminal"])
def test_arrays_are_read_only(name):
    # The checks run once, at construction; a later in-place edit would bypass them.
    P, R, t = valid_arrays()
    mdp = TabularMDP(P, R, 0.9, terminal=t)
    arr = getattr(mdp, name)
    assert not arr.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        arr[(0,) * arr.ndim] = 0


def test_fields_cannot_be_rebound():
    P, R, t = valid_arrays()
    mdp = TabularMDP(P, R, 0.9, terminal=t)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mdp.gamma = 0.5
    with pytest.raises(dataclasses.FrozenInstanceError):
        mdp.P = np.zeros((3, 2, 3))


def test_construction_is_not_changed_through_callers_base_array():
    # A view of the caller's array would let the caller break a validated MDP.
    P, R, t = valid_arrays()
    mdp = TabularMDP(P[:], R, 0.9, terminal=t)
    P[0, 0] = [0.0, 0.0, 0.0]
    assert_allclose(mdp.P.sum(axis=2), 1.0)


def test_construction_does_not_freeze_callers_arrays():
    # A notebook that builds R, makes an MDP, then edits R for a variant
    # should not get "assignment destination is read-only".
    P, R, t = valid_arrays()
    TabularMDP(P, R, 0.9, terminal=t)
    assert P.flags.writeable and R.flags.writeable


def test_with_gamma_changes_only_gamma():
    P, R, t = valid_arrays()
    mdp = TabularMDP(P, R, 0.9, terminal=t, shape=(3, 1))
    other = mdp.with_gamma(0.5)
    assert other is not mdp
    assert other.gamma == 0.5
    assert mdp.gamma == 0.9  # the original is untouched
    assert_array_equal(other.P, P)
    assert_array_equal(other.R, R)
    assert_array_equal(other.terminal, t)
    assert other.shape == (3, 1)
    assert isinstance(other.gamma, float)


@pytest.mark.parametrize("gamma", [-0.5, 2.0])
def test_with_gamma_validates(gamma):
    P, R, t = valid_arrays()
    with pytest.raises(ValueError, match=r"\bgamma\b"):
        TabularMDP(P, R, 0.9, terminal=t).with_gamma(gamma)


# --------------------------------------------------------------------------
# Gridworlds. State index = row * n_cols + col; actions up, right, down, left.
# --------------------------------------------------------------------------


def _s(r, c, n_cols):
    return r * n_cols + c


def assert_transition(mdp, n_cols, cell, action, next_cell, reward):
    s, s2 = _s(*cell, n_cols), _s(*next_cell, n_cols)
    row = mdp.P[s, action]
    # Both gridworlds are deterministic: all mass on the one next state.
    assert row[s2] == 1.0, f"from {cell} action {action}: expected to land in {next_cell}"
    assert row.sum() == 1.0
    assert mdp.R[s, action] == reward, f"from {cell} action {action}: expected reward {reward}"


# Example 3.5 (Figure 3.2), written out by hand: (cell, action, next cell, reward).
EXAMPLE_3_5 = [
    # A = (0, 1): any action, +10, to A' = (4, 1).
    *[((0, 1), a, (4, 1), 10.0) for a in (UP, RIGHT, DOWN, LEFT)],
    # B = (0, 3): any action, +5, to B' = (2, 3).
    *[((0, 3), a, (2, 3), 5.0) for a in (UP, RIGHT, DOWN, LEFT)],
    # Top-left corner: two walls, two ordinary moves.
    ((0, 0), UP, (0, 0), -1.0),
    ((0, 0), LEFT, (0, 0), -1.0),
    ((0, 0), RIGHT, (0, 1), 0.0),  # stepping *into* A pays nothing
    ((0, 0), DOWN, (1, 0), 0.0),
    # Centre: all four moves are ordinary.
    ((2, 2), UP, (1, 2), 0.0),
    ((2, 2), RIGHT, (2, 3), 0.0),
    ((2, 2), DOWN, (3, 2), 0.0),
    ((2, 2), LEFT, (2, 1), 0.0),
    # Bottom-right corner.
    ((4, 4), DOWN, (4, 4), -1.0),
    ((4, 4), RIGHT, (4, 4), -1.0),
    ((4, 4), UP, (3, 4), 0.0),
    ((4, 4), LEFT, (4, 3), 0.0),
    # A' is an ordinary cell: walls still bite there.
    ((4, 1), DOWN, (4, 1), -1.0),
    ((4, 1), UP, (3, 1), 0.0),
    # Top edge between A and B, and to the right of B.
    ((0, 2), UP, (0, 2), -1.0),
    ((0, 2), DOWN, (1, 2), 0.0),
    ((0, 4), UP, (0, 4), -1.0),
    ((0, 4), RIGHT, (0, 4), -1.0),
    ((0, 4), LEFT, (0, 3), 0.0),
    ((1, 1), UP, (0, 1), 0.0),
    ((3, 0), LEFT, (3, 0), -1.0),
]


@pytest.mark.parametrize("cell, action, next_cell, reward", EXAMPLE_3_5)
def test_sutton_barto_gridworld_transitions(cell, action, next_cell, reward):
    assert_transition(sutton_barto_gridworld(), 5, cell, action, next_cell, reward)


def test_sutton_barto_gridworld_structure():
    mdp = sutton_barto_gridworld()
    assert mdp.P.shape == (25, 4, 25)
    assert mdp.gamma == 0.9  # the book's value is the default
    assert mdp.shape == (5, 5)
    assert not mdp.terminal.any()  # a continuing task
    # Deterministic: every (s, a) row is one-hot.
    assert_array_equal(np.count_nonzero(mdp.P, axis=2), 1)
    assert_array_equal(mdp.P.max(axis=2), 1.0)
    # Only four reward values exist in this world.
    assert set(np.unique(mdp.R)) == {-1.0, 0.0, 5.0, 10.0}
    assert sutton_barto_gridworld(gamma=0.5).gamma == 0.5


def test_sutton_barto_wall_count():
    # Counted by hand: the 16 border cells have 20 wall-facing (cell, action)
    # pairs (4 corners x 2 + 12 edge cells x 1), but the two on A and B
    # teleport instead, leaving 18 that pay -1.
    mdp = sutton_barto_gridworld()
    assert np.count_nonzero(mdp.R == -1.0) == 18


# Example 4.1 (Figure 4.1): terminals at (0, 0) and (3, 3), -1 per move.
EXAMPLE_4_1 = [
    # Terminal cells are absorbing and pay 0, whatever the action.
    *[((0, 0), a, (0, 0), 0.0) for a in (UP, RIGHT, DOWN, LEFT)],
    *[((3, 3), a, (3, 3), 0.0) for a in (UP, RIGHT, DOWN, LEFT)],
    # Next to a terminal: one step in, still -1.
    ((0, 1), LEFT, (0, 0), -1.0),
    ((1, 0), UP, (0, 0), -1.0),
    ((3, 2), RIGHT, (3, 3), -1.0),
    ((2, 3), DOWN, (3, 3), -1.0),
    # Bumping into the edge: stay, -1.
    ((0, 1), UP, (0, 1), -1.0),
    ((1, 0), LEFT, (1, 0), -1.0),
    ((0, 3), UP, (0, 3), -1.0),
    ((0, 3), RIGHT, (0, 3), -1.0),
    ((3, 2), DOWN, (3, 2), -1.0),
    # Ordinary moves.
    ((0, 1), RIGHT, (0, 2), -1.0),
    ((0, 1), DOWN, (1, 1), -1.0),
    ((1, 1), UP, (0, 1), -1.0),
    ((1, 1), RIGHT, (1, 2), -1.0),
    ((1, 1), DOWN, (2, 1), -1.0),
    ((1, 1), LEFT, (1, 0), -1.0),
    ((3, 0), RIGHT, (3, 1), -1.0),
]


@pytest.mark.parametrize("cell, action, next_cell, reward", EXAMPLE_4_1)
def test_small_gridworld_transitions(cell, action, next_cell, reward):
    assert_transition(small_gridworld(), 4, cell, action, next_cell, reward)


def test_small_gridworld_structure():
    mdp = small_gridworld()
    assert mdp.P.shape == (16, 4, 16)
    assert mdp.gamma == 1.0  # undiscounted episodic task in the book
    assert mdp.shape == (4, 4)
    assert_array_equal(np.flatnonzero(mdp.terminal), [0, 15])
    assert_array_equal(np.count_nonzero(mdp.P, axis=2), 1)
    # -1 on every transition out of a non-terminal state, 0 out of a terminal.
    assert_array_equal(mdp.R[1:15], -1.0)
    assert_array_equal(mdp.R[[0, 15]], 0.0)
