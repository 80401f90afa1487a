"""Bellman expectation equations for a tabular MDP and a fixed policy.

For a policy pi(a|s) the Bellman expectation equation (Sutton and Barto 2018,
eq. 3.14) reads, in matrix form over all states at once,

    V = r_pi + gamma * P_pi V,
    r_pi[s]     = sum_a pi(a|s) R[s, a],
    P_pi[s, s'] = sum_a pi(a|s) P[s, a, s'].

It is linear in V, so V = (I - gamma P_pi)^{-1} r_pi (exact evaluation), or
it can be iterated to its fixed point (iterative evaluation, section 4.1).
Terminal states are worth 0 and are left out of the system.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .mdp import TabularMDP

__all__ = [
    "check_policy",
    "policy_dynamics",
    "evaluate_policy",
    "policy_evaluation_sweeps",
    "iterative_policy_evaluation",
    "q_from_v",
    "v_from_q",
]

_ATOL = 1e-8


def check_policy(mdp: TabularMDP, pi) -> np.ndarray:
    """Return ``pi`` as a float array after checking it is a policy for ``mdp``.

    Raises ValueError naming ``pi`` if its shape is not (S, A), if an entry is
    negative, or if a row does not sum to 1.
    """
    pi = np.asarray(pi, dtype=np.float64)
    expected = (mdp.n_states, mdp.n_actions)
    if pi.shape != expected:
        raise ValueError(f"pi must have shape (S, A) = {expected}; got shape {pi.shape}")
    if not np.all(np.isfinite(pi)) or pi.min() < 0:
        raise ValueError("pi must hold finite probabilities >= 0")
    sums = pi.sum(axis=1)
    bad = np.abs(sums - 1.0) > _ATOL
    if bad.any():
        s = int(np.argmax(bad))
        raise ValueError(f"each row pi[s, :] must sum to 1; pi[{s}, :] sums to {sums[s]:.6g}")
    return pi


def policy_dynamics(mdp: TabularMDP, pi) -> tuple[np.ndarray, np.ndarray]:
    """The Markov reward process that ``pi`` induces: (P_pi of shape (S, S), r_pi of shape (S,)).

    >>> from course_lib.mdp import small_gridworld, uniform_policy
    >>> mdp = small_gridworld()
    >>> P_pi, r_pi = policy_dynamics(mdp, uniform_policy(mdp))
    >>> P_pi.shape, float(r_pi[5])
    ((16, 16), -1.0)
    """
    pi = check_policy(mdp, pi)
    P_pi = np.einsum("sa,sat->st", pi, mdp.P)
    r_pi = np.einsum("sa,sa->s", pi, mdp.R)
    return P_pi, r_pi


def _states_that_cannot_terminate(P_pi: np.ndarray, terminal: np.ndarray) -> np.ndarray:
    """Boolean (S,): states from which no terminal state can ever be reached."""
    reach = terminal.copy()
    edges = P_pi > 0
    # Grow the set of states with a path to a terminal state; S rounds suffice.
    for _ in range(len(reach)):
        grown = reach | (edges & reach[None, :]).any(axis=1)
        if np.array_equal(grown, reach):
            break
        reach = grown
    return ~reach


def evaluate_policy(mdp: TabularMDP, pi) -> np.ndarray:
    """Exact V_pi, shape (S,), by solving (I - gamma P_pi) V = r_pi over the non-terminal states.

    With gamma = 1 the system has a unique solution only if every state reaches
    a terminal state with probability 1; otherwise a ValueError says which
    states never terminate.

    >>> from course_lib.mdp import small_gridworld, uniform_policy
    >>> mdp = small_gridworld()
    >>> evaluate_policy(mdp, uniform_policy(mdp)).reshape(4, 4)[0].round(1)
    array([  0., -14., -20., -22.])
    """
    P_pi, r_pi = policy_dynamics(mdp, pi)
    live = ~mdp.terminal
    if mdp.gamma == 1.0:
        stuck = _states_that_cannot_terminate(P_pi, mdp.terminal)
        if stuck.any():
            raise ValueError(
                "gamma = 1 and pi never reaches a terminal state from states "
                f"{np.flatnonzero(stuck).tolist()}: their return is an infinite sum, "
                "so V_pi is undefined. Use gamma < 1 or a policy that terminates."
            )
    V = np.zeros(mdp.n_states)
    A = np.eye(int(live.sum())) - mdp.gamma * P_pi[np.ix_(live, live)]
    V[live] = np.linalg.solve(A, r_pi[live])
    return V


def policy_evaluation_sweeps(mdp: TabularMDP, pi, V0=None) -> Iterator[np.ndarray]:
    """Yield V_1, V_2, ...: synchronous sweeps V_{k+1} = r_pi + gamma P_pi V_k (endless).

    Each sweep updates every state at once from the previous estimate (the
    two-array version of Sutton and Barto's section 4.1). Terminal states stay 0.
    """
    P_pi, r_pi = policy_dynamics(mdp, pi)
    live = ~mdp.terminal
    V = np.zeros(mdp.n_states) if V0 is None else np.array(V0, dtype=np.float64)
    if V.shape != (mdp.n_states,):
        raise ValueError(f"V0 must have shape (S,) = ({mdp.n_states},); got shape {V.shape}")
    V[~live] = 0.0
    while True:
        V = np.where(live, r_pi + mdp.gamma * (P_pi @ V), 0.0)
        yield V


def iterative_policy_evaluation(mdp: TabularMDP, pi, tol: float = 1e-10, max_sweeps: int = 100_000) -> np.ndarray:
    """V_pi, shape (S,), by sweeping until no state changes by more than ``tol``.

    Raises RuntimeError if ``max_sweeps`` sweeps do not get there (with gamma = 1
    and a policy that never terminates, they never do).
    """
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    V_old = np.zeros(mdp.n_states)
    for sweep, V in enumerate(policy_evaluation_sweeps(mdp, pi), start=1):
        if np.max(np.abs(V - V_old)) < tol:
            return V
        if sweep >= max_sweeps:
            raise RuntimeError(
                f"iterative policy evaluation did not reach tol={tol} in {max_sweeps} sweeps "
                f"(last change {np.max(np.abs(V - V_old)):.3g})"
            )
        V_old = V
    raise AssertionError("unreachable")


def q_from_v(mdp: TabularMDP, V) -> np.ndarray:
    """Q[s, a] = R[s, a] + gamma * sum_s' P[s, a, s'] V[s'], shape (S, A) (eq. 3.13 one step ahead).

    >>> from course_lib.mdp import small_gridworld, uniform_policy
    >>> mdp = small_gridworld()
    >>> V = evaluate_policy(mdp, uniform_policy(mdp))
    >>> q_from_v(mdp, V)[1].round(1)   # from (0, 1): up, right, down, left
    array([-15., -21., -19.,  -1.])
    """
    V = np.asarray(V, dtype=np.float64)
    if V.shape != (mdp.n_states,):
        raise ValueError(f"V must have shape (S,) = ({mdp.n_states},); got shape {V.shape}")
    Q = mdp.R + mdp.gamma * (mdp.P @ V)
    Q[mdp.terminal] = 0.0
    return Q


def v_from_q(pi, Q) -> np.ndarray:
    """V[s] = sum_a pi(a|s) Q[s, a], shape (S,)."""
    pi = np.asarray(pi, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if pi.ndim != 2 or pi.shape != Q.shape:
        raise ValueError(f"pi and Q must both have shape (S, A); got pi {pi.shape} and Q {Q.shape}")
    return np.einsum("sa,sa->s", pi, Q)
