"""Checks for exercise 2: greedy policies, value iteration, policy iteration.

The references are written state by state with plain loops (in-place value
iteration, Sutton and Barto's section 4.4 box), independently of the
vectorized kernels in ``course_lib.bellman``. Optimal policies are not unique
where actions tie, so a policy is judged by whether each state's action is
optimal (its Q* is within a hair of the best), not by equality with ours.
"""

from __future__ import annotations

import numpy as np

from ..mdp import ACTIONS, TabularMDP, gridworld, small_gridworld, sutton_barto_gridworld
from . import assert_close, grid_labels, random_mdp

__all__ = ["check_greedy_policy", "check_value_iteration", "check_policy_iteration"]


# ---------------------------------------------------------------- references
def _q_loop(mdp: TabularMDP, V: np.ndarray) -> np.ndarray:
    S, A = mdp.R.shape
    Q = np.zeros((S, A))
    for s in range(S):
        if mdp.terminal[s]:
            continue
        for a in range(A):
            Q[s, a] = mdp.R[s, a] + mdp.gamma * sum(mdp.P[s, a, t] * V[t] for t in range(S) if mdp.P[s, a, t])
    return Q


def _value_iteration_loop(mdp: TabularMDP, theta: float = 1e-12, max_sweeps: int = 100_000) -> np.ndarray:
    """V* by in-place value iteration, one state at a time."""
    S, A = mdp.R.shape
    successors = [[[(t, mdp.P[s, a, t]) for t in range(S) if mdp.P[s, a, t]] for a in range(A)] for s in range(S)]
    V = [0.0] * S
    for _ in range(max_sweeps):
        delta = 0.0
        for s in range(S):
            if mdp.terminal[s]:
                continue
            best = max(mdp.R[s, a] + mdp.gamma * sum(p * V[t] for t, p in successors[s][a]) for a in range(A))
            delta = max(delta, abs(best - V[s]))
            V[s] = best
        if delta < theta:
            return np.array(V)
    raise AssertionError("reference value iteration did not converge")


def _action_name(mdp: TabularMDP, a: int) -> str:
    return ACTIONS[a] if mdp.shape is not None and mdp.n_actions == 4 else f"action {a}"


def _check_one_hot(pi, what: str, case: str, shape: tuple[int, int]) -> None:
    if pi is None:
        raise AssertionError(f"{what} returned None for the policy in case '{case}'. Did you forget `return`?")
    if not isinstance(pi, np.ndarray):
        raise AssertionError(f"{what}, case '{case}': the policy must be a numpy array; got {type(pi).__name__}")
    if pi.shape != shape:
        raise AssertionError(
            f"{what}, case '{case}': the policy must have shape (S, A) = {shape} (one row per state, a 1 in the "
            f"column of the chosen action); got shape {pi.shape}"
        )
    ones = np.isclose(pi, 1.0)
    zeros = np.isclose(pi, 0.0)
    bad = ~np.all(ones | zeros, axis=1) | (ones.sum(axis=1) != 1)
    if bad.any():
        s = int(np.argmax(bad))
        raise AssertionError(
            f"{what}, case '{case}': each row must be one-hot (a single 1, zeros elsewhere); row {s} is {pi[s].tolist()}"
        )


def _check_optimal_policy(pi, mdp: TabularMDP, V_star: np.ndarray, what: str, case: str) -> None:
    _check_one_hot(pi, what, case, (mdp.n_states, mdp.n_actions))
    Q_star = _q_loop(mdp, V_star)
    chosen = np.argmax(pi, axis=1)
    gap = Q_star.max(axis=1) - Q_star[np.arange(mdp.n_states), chosen]
    bad = (gap > 1e-6) & ~mdp.terminal
    if bad.any():
        s = int(np.argmax(bad))
        best = int(np.argmax(Q_star[s]))
        raise AssertionError(
            f"{what}, case '{case}': at {grid_labels(mdp)((s,))} the policy picks {_action_name(mdp, chosen[s])} "
            f"with Q* = {Q_star[s, chosen[s]]:.6g}, but {_action_name(mdp, best)} has Q* = {Q_star[s, best]:.6g}: "
            f"not a greedy (optimal) action"
        )


def _unpack(result, what: str, case: str):
    if result is None:
        raise AssertionError(f"{what} returned None for case '{case}'. Did you forget `return V, pi`?")
    if not isinstance(result, tuple) or len(result) != 2:
        raise AssertionError(f"{what}, case '{case}': expected a pair (V, pi); got {type(result).__name__}")
    return result


# ---------------------------------------------------------------- greedy policy
def _greedy_cases(hidden: bool):
    rng = np.random.default_rng(31 if hidden else 30)
    yield "one state, best action last", np.array([[0.0, 1.0, 2.0]])
    yield "three states", np.array([[1.0, 3.0, 2.0], [-1.0, -5.0, -2.0], [0.5, 0.0, 0.25]])
    yield "an exact tie: the lowest index wins", np.array([[2.0, 5.0, 5.0, 1.0], [4.0, 4.0, 4.0, 4.0]])
    yield "random Q of shape (6, 4)", rng.normal(size=(6, 4))
    if hidden:
        yield "a single action", rng.normal(size=(5, 1))
        yield "more actions than states", rng.integers(-3, 3, size=(2, 7)).astype(float)
        yield "negative values only", -np.abs(rng.normal(size=(4, 3))) - 1.0


def _greedy_loop(Q: np.ndarray) -> np.ndarray:
    S, A = Q.shape
    pi = np.zeros((S, A))
    for s in range(S):
        best = 0
        for a in range(1, A):
            if Q[s, a] > Q[s, best]:  # strictly greater: the first of tied actions stays
                best = a
        pi[s, best] = 1.0
    return pi


def check_greedy_policy(greedy_policy, hidden: bool = False) -> None:
    """Check ``greedy_policy(Q)`` returns the one-hot argmax of each row, ties to the lowest index."""
    n = 0
    for case, Q in _greedy_cases(hidden):
        got = greedy_policy(Q.copy())
        _check_one_hot(got, "greedy_policy", case, Q.shape)
        assert_close(got, _greedy_loop(Q), "greedy_policy", case, labels=lambda idx: f"state {idx[0]}, action {idx[1]}")
        n += 1
    print(f"greedy_policy: all {n} cases pass.")


# ---------------------------------------------------------------- value and policy iteration
def _control_cases(hidden: bool):
    rng = np.random.default_rng(41 if hidden else 40)
    yield "Example 4.1 (4x4 grid, gamma 1)", small_gridworld()
    yield "Example 3.5 (5x5 grid, gamma 0.9)", sutton_barto_gridworld()
    yield "random 6-state MDP with 3 actions, gamma 0.8", random_mdp(rng, 6, 3, 0.8)
    if hidden:
        yield "Example 3.5 with gamma 0.5", sutton_barto_gridworld(0.5)
        yield "random MDP with 2 terminal states, gamma 0.95", random_mdp(rng, 8, 2, 0.95, n_terminal=2)
        yield "gamma 0: the best immediate reward", random_mdp(rng, 5, 4, 0.0)
        yield "3x6 corridor with a goal, gamma 0.9", gridworld(
            3, 6, 0.9, step_reward=0.0, wall_reward=-1.0, terminal_cells=((1, 5),),
            teleports={(1, 4): ((1, 5), 1.0)},
        )


def _check_control(fn, what: str, hidden: bool) -> None:
    n = 0
    for case, mdp in _control_cases(hidden):
        V, pi = _unpack(fn(mdp), what, case)
        V_star = _value_iteration_loop(mdp)
        assert_close(V, V_star, f"{what}: V", case, atol=1e-6, labels=grid_labels(mdp))
        _check_optimal_policy(pi, mdp, V_star, what, case)
        n += 1
    print(f"{what}: all {n} cases pass (V = V* and every action is optimal).")


def check_value_iteration(value_iteration, hidden: bool = False) -> None:
    """Check ``value_iteration(mdp)`` returns (V*, an optimal one-hot pi) against loop value iteration."""
    _check_control(value_iteration, "value_iteration", hidden)


def check_policy_iteration(policy_iteration, hidden: bool = False) -> None:
    """Check ``policy_iteration(mdp)`` returns (V*, an optimal one-hot pi) against loop value iteration."""
    _check_control(policy_iteration, "policy_iteration", hidden)
