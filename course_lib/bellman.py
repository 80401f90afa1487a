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


# ---------------------------------------------------------------------------
# Control: the Bellman optimality equation, value iteration, policy iteration
# (Sutton and Barto 2018, sections 3.6 and 4.2-4.4).
#
#     Q*(s, a) = R[s, a] + gamma * sum_s' P[s, a, s'] V*(s'),     V*(s) = max_a Q*(s, a).
#
# A policy that is greedy with respect to Q* is optimal. Every kernel below
# works on all states and actions at once; the only loops are over sweeps.
# ---------------------------------------------------------------------------

__all__ += [
    "greedy_policy",
    "bellman_optimality_update",
    "bellman_optimality_sweeps",
    "value_iteration",
    "policy_improvement",
    "policy_iteration",
    "optimal_actions",
]


def greedy_policy(Q, atol: float = 1e-9) -> np.ndarray:
    """Deterministic greedy policy as a one-hot array: pi[s, a] = 1 for a = argmax_a' Q[s, a'].

    Q: array of shape (S, A). Returns pi of shape (S, A), one 1 per row.
    Actions within ``atol`` of the row's maximum count as tied (round-off in Q
    must not decide), and among tied actions the lowest index wins.

    >>> greedy_policy(np.array([[1.0, 3.0, 2.0], [5.0, 5.0, 0.0]]))
    array([[0., 1., 0.],
           [1., 0., 0.]])
    """
    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 2 or 0 in Q.shape:
        raise ValueError(f"Q must have shape (S, A) with S, A >= 1; got shape {Q.shape}")
    if not np.all(np.isfinite(Q)):
        raise ValueError("Q must be finite (no NaN or inf)")
    if not atol >= 0:
        raise ValueError(f"atol must be >= 0; got {atol}")
    tied = Q >= Q.max(axis=1, keepdims=True) - atol   # (S, A), at least one True per row
    best = np.argmax(tied, axis=1)                     # first True: the lowest tied index
    pi = np.zeros_like(Q)
    pi[np.arange(Q.shape[0]), best] = 1.0
    return pi


def bellman_optimality_update(mdp: TabularMDP, V) -> np.ndarray:
    """One application of the Bellman optimality operator: V_new[s] = max_a (R[s, a] + gamma P[s, a] . V).

    V: shape (S,). Returns shape (S,); terminal states stay 0. V* is its
    unique fixed point when gamma < 1 (the operator is a gamma-contraction in
    the max norm).

    >>> from course_lib.mdp import small_gridworld
    >>> bellman_optimality_update(small_gridworld(), np.zeros(16)).reshape(4, 4)[0]
    array([ 0., -1., -1., -1.])
    """
    return q_from_v(mdp, V).max(axis=1)


def bellman_optimality_sweeps(mdp: TabularMDP, V0=None) -> Iterator[np.ndarray]:
    """Yield V_1, V_2, ...: synchronous value-iteration sweeps V_{k+1} = max_a Q_k (endless).

    Every state is updated from the previous sweep's V (the two-array
    version; Sutton and Barto's box updates in place, which converges to the
    same V*). V0 defaults to zeros; terminal states are held at 0.
    """
    V = np.zeros(mdp.n_states) if V0 is None else np.array(V0, dtype=np.float64)
    if V.shape != (mdp.n_states,):
        raise ValueError(f"V0 must have shape (S,) = ({mdp.n_states},); got shape {V.shape}")
    V[mdp.terminal] = 0.0
    while True:
        V = bellman_optimality_update(mdp, V)
        yield V


def value_iteration(mdp: TabularMDP, tol: float = 1e-10, max_sweeps: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """V* of shape (S,) and a greedy optimal policy pi* of shape (S, A) (one-hot), by value iteration.

    Sweeps V_{k+1}[s] = max_a (R[s, a] + gamma sum_s' P[s, a, s'] V_k[s']) over all
    states at once until no state changes by more than ``tol``; for gamma < 1
    the result is then within tol * gamma / (1 - gamma) of V*. pi* is greedy
    with respect to the final Q, ties to the lowest action index.

    Raises RuntimeError if ``max_sweeps`` sweeps do not get there (gamma = 1 on
    a task where some state can avoid termination forever).

    >>> from course_lib.mdp import small_gridworld
    >>> V, pi = value_iteration(small_gridworld())
    >>> V.reshape(4, 4)[0], pi[1]              # from (0, 1) the best move is left
    (array([ 0., -1., -2., -3.]), array([0., 0., 0., 1.]))
    """
    if not tol > 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    V_old = np.zeros(mdp.n_states)
    for sweep, V in enumerate(bellman_optimality_sweeps(mdp), start=1):
        change = np.max(np.abs(V - V_old))
        if change < tol:
            break
        if sweep >= max_sweeps:
            raise RuntimeError(
                f"value iteration did not reach tol={tol} in {max_sweeps} sweeps (last change {change:.3g}); "
                "with gamma = 1 this happens when some state can avoid termination forever"
            )
        V_old = V
    # V is only tol-accurate, so Q values that are tied in exact arithmetic may
    # differ by about that much: treat such actions as tied.
    slack = tol * (mdp.gamma / (1.0 - mdp.gamma) if mdp.gamma < 1.0 else 1.0)
    return V, greedy_policy(q_from_v(mdp, V), atol=1e-9 + 4.0 * slack)


def policy_improvement(mdp: TabularMDP, V, pi=None, atol: float = 1e-9) -> np.ndarray:
    """The greedy policy with respect to Q = q_from_v(mdp, V), one-hot of shape (S, A).

    If the current deterministic policy ``pi`` (one-hot, shape (S, A)) is given,
    a state keeps its action unless another one is better by more than
    ``atol``: policy iteration then stops instead of cycling among equally
    good actions (Sutton and Barto, exercise 4.4).
    """
    Q = q_from_v(mdp, V)
    new = greedy_policy(Q, atol=atol)
    if pi is None:
        return new
    pi = check_policy(mdp, pi)
    if not np.all((pi == 0.0) | (pi == 1.0)):
        raise ValueError("pi must be deterministic (one-hot rows) to be improved in place")
    states = np.arange(mdp.n_states)
    current = np.argmax(pi, axis=1)
    keep = Q[states, current] >= Q.max(axis=1) - atol        # (S,)
    return np.where(keep[:, None], pi, new)


def policy_iteration(mdp: TabularMDP, pi0=None, max_iterations: int = 1_000) -> tuple[np.ndarray, np.ndarray]:
    """V* of shape (S,) and an optimal one-hot policy pi* of shape (S, A), by policy iteration.

    Alternates exact evaluation (``evaluate_policy``, one linear solve) and
    greedy improvement until the policy no longer changes; for a finite MDP
    that takes finitely many iterations. The returned pi is greedy with
    respect to V*, ties to the lowest action index, like ``value_iteration``'s. The first evaluation is of ``pi0``,
    by default the uniform random policy (with gamma = 1 an arbitrary
    deterministic start may never terminate, and then has no value).

    >>> from course_lib.mdp import small_gridworld
    >>> V, pi = policy_iteration(small_gridworld())
    >>> V.reshape(4, 4)[3]
    array([-3., -2., -1.,  0.])
    """
    pi = np.full((mdp.n_states, mdp.n_actions), 1.0 / mdp.n_actions) if pi0 is None else check_policy(mdp, pi0)
    V = evaluate_policy(mdp, pi)
    pi_new = policy_improvement(mdp, V)
    for _ in range(max_iterations):
        pi = pi_new
        V = evaluate_policy(mdp, pi)
        pi_new = policy_improvement(mdp, V, pi)
        if np.array_equal(pi_new, pi):
            # pi is optimal; report the canonical greedy policy (ties to the lowest
            # action), which is optimal too and the one value_iteration returns.
            return V, greedy_policy(q_from_v(mdp, V))
    raise RuntimeError(f"policy iteration did not settle in {max_iterations} iterations")


def optimal_actions(mdp: TabularMDP, V, atol: float = 1e-6) -> np.ndarray:
    """Boolean (S, A): the actions whose Q = q_from_v(mdp, V) is within ``atol`` of the best in their state.

    With V = V* these are all the optimal actions (every policy that only
    picks them is optimal); ``greedy_policy`` keeps just one per state. Ties
    are what Sutton and Barto's Figure 3.5 draws as several arrows in a cell.

    >>> from course_lib.mdp import small_gridworld
    >>> mdp = small_gridworld()
    >>> V, _ = value_iteration(mdp)
    >>> optimal_actions(mdp, V)[5]             # from (1, 1): up and left are equally short
    array([ True, False, False,  True])
    """
    if not atol >= 0:
        raise ValueError(f"atol must be >= 0; got {atol}")
    Q = q_from_v(mdp, V)
    return Q >= Q.max(axis=1, keepdims=True) - atol
