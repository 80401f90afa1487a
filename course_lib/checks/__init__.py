"""Checks that exercise cells run on a student's function, one module per chapter.

Each ``check_*`` takes the student's function, runs it over a grid of cases,
and compares with a plain-loop reference written in the checks module,
independently of the vectorized kernels in ``course_lib``. A failure raises
``AssertionError`` with the case, the first wrong entry, and expected vs got.
``hidden=True`` adds the extra cases an instructor's hidden tests run.

Exercise N imports from ``course_lib.checks.chNN``; this module holds what
they share.
"""

from __future__ import annotations

import numpy as np

from ..mdp import TabularMDP

__all__ = ["assert_close", "grid_labels", "random_mdp"]


def assert_close(got, expected, what: str, case: str, atol: float = 1e-6, rtol: float = 1e-6, labels=None) -> None:
    """Assert ``got`` matches ``expected`` and say where and how it does not.

    ``labels`` names the indices of the first axis (e.g. "state" or a grid
    coordinate function) to make the message speak the student's language.
    """
    if got is None:
        raise AssertionError(f"{what} returned None for case '{case}'. Did you forget `return`?")
    if type(expected).__module__.startswith("torch"):
        if not type(got).__module__.startswith("torch"):
            raise AssertionError(f"{what}, case '{case}': expected a torch tensor back (torch in, torch out); got {type(got).__name__}")
        got, expected = got.detach().cpu().numpy(), expected.detach().cpu().numpy()
    elif not isinstance(got, np.ndarray):
        raise AssertionError(f"{what}, case '{case}': expected a numpy array; got {type(got).__name__}")
    if got.shape != expected.shape:
        raise AssertionError(f"{what}, case '{case}': expected shape {expected.shape}; got shape {got.shape}")
    ok = np.isclose(got, expected, atol=atol, rtol=rtol)
    if not ok.all():
        idx = tuple(int(i) for i in np.argwhere(~ok)[0])
        if not idx:  # a 0-d result: nothing to point at
            where = "the (scalar) result"
        else:
            where = labels(idx) if labels else f"index {idx if len(idx) > 1 else idx[0]}"
        n_bad = int((~ok).sum())
        raise AssertionError(
            f"{what}, case '{case}': at {where} expected {expected[idx]:.6g}, got {got[idx]:.6g} "
            f"({n_bad} of {ok.size} entries differ)"
        )


def grid_labels(mdp: TabularMDP):
    """A labels function for assert_close: "state 7 (row 1, col 3), action up"."""
    if mdp.shape is None:
        return lambda idx: f"state {idx[0]}" + (f", action {idx[1]}" if len(idx) > 1 else "")
    n_cols = mdp.shape[1]
    actions = ("up", "right", "down", "left")

    def label(idx):
        r, c = divmod(idx[0], n_cols)
        text = f"state {idx[0]} (row {r}, col {c})"
        return text + (f", action {actions[idx[1]]}" if len(idx) > 1 else "")

    return label


def random_mdp(rng, S: int, A: int, gamma: float, n_terminal: int = 0) -> TabularMDP:
    """A dense random MDP; the first n_terminal states are absorbing with reward 0."""
    P = rng.dirichlet(np.ones(S), size=(S, A))
    R = rng.normal(size=(S, A))
    terminal = np.zeros(S, dtype=bool)
    terminal[:n_terminal] = True
    P[terminal] = np.eye(S)[terminal][:, None, :]
    R[terminal] = 0.0
    return TabularMDP(P, R, gamma, terminal=terminal)
