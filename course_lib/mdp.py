"""Finite Markov decision processes as arrays, and the gridworlds of the course.

A tabular MDP is the tuple (P, R, gamma) of Sutton and Barto (2018), section 3.1:

- ``P[s, a, s']`` = Pr(S_{t+1} = s' | S_t = s, A_t = a), shape (S, A, S);
- ``R[s, a]`` = E[R_{t+1} | S_t = s, A_t = a], the expected reward, shape (S, A);
- ``gamma`` in [0, 1], the discount.

States flagged ``terminal`` are absorbing and worth 0 by definition, which is
what makes gamma = 1 usable for episodic tasks (Sutton and Barto, section 3.4).

Grid states are numbered ``row * n_cols + col``; actions 0..3 are up, right,
down, left (``ACTIONS``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = [
    "ACTIONS",
    "ACTION_ARROWS",
    "TabularMDP",
    "gridworld",
    "sutton_barto_gridworld",
    "small_gridworld",
    "uniform_policy",
    "cliff_walking",
    "CLIFF_SHAPE",
    "CLIFF_START",
    "CLIFF_GOAL",
    "CLIFF_CELLS",
]

ACTIONS = ("up", "right", "down", "left")
ACTION_ARROWS = ("↑", "→", "↓", "←")
# (d_row, d_col) for each action, in the order of ACTIONS.
_MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])

# Tolerance for "sums to 1": float64 round-off on a few hundred terms, not a
# licence for sloppy tables.
_ATOL = 1e-8


@dataclasses.dataclass(frozen=True, eq=False)
class TabularMDP:
    """A finite MDP given by its arrays; checked on construction.

    Parameters
    ----------
    P : array of shape (S, A, S)
        Transition probabilities; each ``P[s, a]`` sums to 1.
    R : array of shape (S, A)
        Expected immediate reward of taking action a in state s.
    gamma : float in [0, 1]
        Discount factor.
    terminal : bool array of shape (S,), optional
        Absorbing states whose value is 0. Defaults to none.
    shape : (n_rows, n_cols), optional
        Set by the grid builders so that plots can lay values out on the grid.

    Example
    -------
    >>> P = np.array([[[0.0, 1.0]], [[0.0, 1.0]]])   # 2 states, 1 action
    >>> mdp = TabularMDP(P, R=np.array([[1.0], [0.0]]), gamma=0.9,
    ...                  terminal=np.array([False, True]))
    >>> mdp.n_states, mdp.n_actions
    (2, 1)
    """

    P: np.ndarray
    R: np.ndarray
    gamma: float
    terminal: np.ndarray | None = None
    shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        # Copies: the MDP is validated once, so no caller may change it afterwards.
        P = np.array(self.P, dtype=np.float64)
        R = np.array(self.R, dtype=np.float64)
        if P.ndim != 3 or P.shape[0] != P.shape[2]:
            raise ValueError(f"P must have shape (S, A, S); got shape {P.shape}")
        S, A, _ = P.shape
        if S == 0 or A == 0:
            raise ValueError(f"P must have at least one state and one action; got shape {P.shape}")
        if R.shape != (S, A):
            raise ValueError(f"R must have shape (S, A) = ({S}, {A}) to match P; got shape {R.shape}")
        if not np.all(np.isfinite(P)) or not np.all(np.isfinite(R)):
            raise ValueError("P and R must be finite (no NaN or inf)")
        if P.min() < 0:
            s, a, s2 = np.unravel_index(np.argmin(P), P.shape)
            raise ValueError(f"P must hold probabilities >= 0; P[{s}, {a}, {s2}] = {P[s, a, s2]}")
        row_sums = P.sum(axis=2)
        bad = np.abs(row_sums - 1.0) > _ATOL
        if bad.any():
            s, a = np.argwhere(bad)[0]
            raise ValueError(
                f"each row P[s, a, :] must sum to 1; P[{s}, {a}, :] sums to {row_sums[s, a]:.6g}"
            )
        gamma = float(self.gamma)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1]; got {self.gamma}")
        if self.terminal is None:
            terminal = np.zeros(S, dtype=bool)
        else:
            terminal = np.array(self.terminal)
            if terminal.shape != (S,):
                raise ValueError(f"terminal must have shape (S,) = ({S},); got shape {terminal.shape}")
            if terminal.dtype != bool:
                raise ValueError(f"terminal must be a boolean array; got dtype {terminal.dtype}")
        if self.shape is not None and int(np.prod(self.shape)) != S:
            raise ValueError(f"shape {self.shape} does not hold the {S} states of P")
        for name, value in (("P", P), ("R", R), ("terminal", terminal)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        object.__setattr__(self, "gamma", gamma)

    @property
    def n_states(self) -> int:
        return self.P.shape[0]

    @property
    def n_actions(self) -> int:
        return self.P.shape[1]

    def with_gamma(self, gamma: float) -> "TabularMDP":
        """The same dynamics with another discount (validated again)."""
        return dataclasses.replace(self, gamma=gamma)


def uniform_policy(mdp: TabularMDP) -> np.ndarray:
    """The equiprobable random policy, pi(a|s) = 1/A, shape (S, A)."""
    return np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions)


def gridworld(
    n_rows: int,
    n_cols: int,
    gamma: float,
    step_reward: float = 0.0,
    wall_reward: float = 0.0,
    terminal_cells: tuple[tuple[int, int], ...] = (),
    teleports: dict[tuple[int, int], tuple[tuple[int, int], float]] | None = None,
) -> TabularMDP:
    """A deterministic gridworld: each action moves one cell, walls keep you in place.

    Moving off the grid leaves the state unchanged and pays ``wall_reward``;
    any other move pays ``step_reward``. ``teleports[(r, c)] = ((r2, c2), reward)``
    makes every action in cell (r, c) jump to (r2, c2) and pay ``reward``
    (the A and B cells of Sutton and Barto's Example 3.5). Terminal cells are
    absorbing with reward 0.
    """
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"n_rows and n_cols must be >= 1; got {n_rows} x {n_cols}")
    S, A = n_rows * n_cols, len(ACTIONS)
    rows, cols = np.divmod(np.arange(S), n_cols)                       # (S,)
    target_r = rows[:, None] + _MOVES[None, :, 0]                      # (S, A)
    target_c = cols[:, None] + _MOVES[None, :, 1]                      # (S, A)
    off_grid = (target_r < 0) | (target_r >= n_rows) | (target_c < 0) | (target_c >= n_cols)
    next_state = np.where(off_grid, np.arange(S)[:, None], target_r * n_cols + target_c)
    R = np.where(off_grid, wall_reward, step_reward).astype(np.float64)

    for (r, c), ((r2, c2), reward) in (teleports or {}).items():
        next_state[r * n_cols + c, :] = r2 * n_cols + c2
        R[r * n_cols + c, :] = reward

    terminal = np.zeros(S, dtype=bool)
    for r, c in terminal_cells:
        terminal[r * n_cols + c] = True
    next_state[terminal] = np.arange(S)[terminal, None]
    R[terminal] = 0.0

    P = np.zeros((S, A, S))
    P[np.arange(S)[:, None], np.arange(A)[None, :], next_state] = 1.0
    return TabularMDP(P, R, gamma, terminal=terminal, shape=(n_rows, n_cols))


def sutton_barto_gridworld(gamma: float = 0.9) -> TabularMDP:
    """Example 3.5 of Sutton and Barto (2018): the 5x5 grid with teleports.

    Every action in A = (0, 1) pays +10 and lands in A' = (4, 1); every action in
    B = (0, 3) pays +5 and lands in B' = (2, 3). Bumping into the edge pays -1;
    all other moves pay 0. Continuing task, gamma = 0.9 in the book.
    """
    return gridworld(
        5, 5, gamma, step_reward=0.0, wall_reward=-1.0,
        teleports={(0, 1): ((4, 1), 10.0), (0, 3): ((2, 3), 5.0)},
    )


def small_gridworld(gamma: float = 1.0) -> TabularMDP:
    """Example 4.1 of Sutton and Barto (2018): the 4x4 grid with terminal corners.

    Reward -1 on every transition (bumping into the edge included) until one of
    the two shaded corners, (0, 0) or (3, 3), is reached. Episodic, gamma = 1.
    """
    return gridworld(
        4, 4, gamma, step_reward=-1.0, wall_reward=-1.0,
        terminal_cells=((0, 0), (3, 3)),
    )


# Cliff walking (Sutton and Barto 2018, Example 6.6): a 4 x 12 grid, start in the
# bottom-left corner, goal in the bottom-right, the cells between them are the cliff.
CLIFF_SHAPE = (4, 12)
CLIFF_START = 3 * 12 + 0
CLIFF_GOAL = 3 * 12 + 11
CLIFF_CELLS = tuple(3 * 12 + c for c in range(1, 11))


def cliff_walking(gamma: float = 1.0, cliff_reward: float = -100.0) -> TabularMDP:
    """Example 6.6 of Sutton and Barto (2018): the cliff walk, episodic, gamma = 1.

    Every move pays -1 (bumping into the edge included) except a move *into* a
    cliff cell, which pays ``cliff_reward`` (-100) and puts the agent back on
    ``CLIFF_START`` (row 3, col 0) at once. ``CLIFF_GOAL`` (row 3, col 11) is
    terminal. The cliff cells can never be occupied; they are flagged terminal
    so that they hold value 0 and no sampler starts in them. Episodes start in
    ``CLIFF_START``: pass it to the learners (``course_lib.td``) or to
    ``TabularEnv.reset(options={"state": CLIFF_START})``.

    >>> mdp = cliff_walking()
    >>> int(mdp.P[CLIFF_START, 1].argmax()) == CLIFF_START, float(mdp.R[CLIFF_START, 1])   # step right: off the cliff
    (True, -100.0)
    >>> int(mdp.P[CLIFF_START, 0].argmax()), float(mdp.R[CLIFF_START, 0])                   # step up: (2, 0)
    (24, -1.0)
    """
    n_rows, n_cols = CLIFF_SHAPE
    base = gridworld(n_rows, n_cols, gamma, step_reward=-1.0, wall_reward=-1.0, terminal_cells=((3, n_cols - 1),))
    next_state = base.P.argmax(axis=2)                     # (S, A); the grid is deterministic
    R = base.R.copy()
    cliff = np.zeros(base.n_states, dtype=bool)
    cliff[list(CLIFF_CELLS)] = True
    into_cliff = cliff[next_state] & ~cliff[:, None]      # (S, A): moves that step over the edge
    next_state[into_cliff] = CLIFF_START
    R[into_cliff] = cliff_reward
    next_state[cliff] = np.arange(base.n_states)[cliff, None]
    R[cliff] = 0.0
    S, A = next_state.shape
    P = np.zeros((S, A, S))
    P[np.arange(S)[:, None], np.arange(A)[None, :], next_state] = 1.0
    return TabularMDP(P, R, gamma, terminal=base.terminal | cliff, shape=CLIFF_SHAPE)
