"""Chapter 2 benchmark: value iteration vectorized over states against a loop over states.

Run from the repository root::

    python benchmarks/bench_ch02.py                      # n x n grids, n = 5 .. 100 (S up to 10,000)
    python benchmarks/bench_ch02.py --sizes 5 10 --repeats 3

The MDP is a slippery n x n grid (S = n^2 states, A = 4 actions): an action
moves the intended way with probability 1 - 2 * slip and to either side with
probability slip each; bumping into the edge costs -1, entering the goal in
the bottom-right corner pays +10, and the goal is terminal; gamma = 0.9.
Every (s, a) has at most K = 3 successors.

Four solvers run the same algorithm, synchronous value iteration from V = 0
until no state changes by more than ``tol``, and the script checks that they
agree (values and greedy actions) before it reports any speed:

* **vectorized**: a sweep is a few array operations over all states and
  actions on the successor lists, ``Q = R + gamma * sum_k prob_k * V[next_k]``,
  stored as (K, A, S) so that the max over actions runs over contiguous rows;
* **library (dense)**: ``course_lib.bellman.value_iteration`` on the same MDP as
  a ``TabularMDP`` with its dense (S, A, S) table. Its sweep costs O(S^2 A)
  instead of O(S A K), so it only runs while that table stays small
  (``--dense-max-states``);
* **state loop**: a Python loop over states, each state's backup done with
  numpy over its actions and successors (vectorized over everything but the
  states: the comparison the issue asks for);
* **pure Python**: the textbook triple loop over states, actions and
  successors on Python lists. It calls no numpy, which on this small
  per-state work is faster than the state loop: the strongest loop baseline.

Times are medians of ``time.perf_counter`` over the repeats (the loops are
repeated ``--loop-repeats`` times); the "cpu" ratios use ``time.process_time``
instead, which leaves out time spent waiting for a core on a busy machine.
Target: vectorized >= 100x the loop over states at S = 10,000.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import time

import numpy as np

from course_lib.bellman import value_iteration
from course_lib.mdp import TabularMDP

# (d_row, d_col) of up, right, down, left, as in course_lib.mdp.ACTIONS.
_MOVES = np.array([(-1, 0), (0, 1), (1, 0), (0, -1)])


@dataclasses.dataclass(frozen=True)
class SuccessorMDP:
    """An MDP given by successor lists: K possible next states per (s, a).

    next_state: int (K, A, S); prob: float (K, A, S), summing to 1 over K;
    R: float (A, S), expected reward; terminal: bool (S,); gamma: float.
    """

    next_state: np.ndarray
    prob: np.ndarray
    R: np.ndarray
    terminal: np.ndarray
    gamma: float

    @property
    def n_states(self) -> int:
        return self.R.shape[1]


def slippery_grid(n: int, slip: float = 0.1, gamma: float = 0.9) -> SuccessorMDP:
    """The benchmark's n x n slippery grid in successor form (see the module docstring)."""
    if n < 2:
        raise ValueError(f"n must be >= 2 (the goal needs somewhere to be reached from); got {n}")
    S, A = n * n, 4
    rows, cols = np.divmod(np.arange(S), n)                                  # (S,)
    goal = S - 1
    # Successor k of action a: the intended move (k = 0) or a slip to either side (k = 1, 2).
    directions = np.stack([np.arange(A), (np.arange(A) + 1) % A, (np.arange(A) + 3) % A])   # (K, A)
    probs = np.array([1 - 2 * slip, slip, slip])                              # (K,)
    r2 = rows[None, None, :] + _MOVES[directions, 0][..., None]               # (K, A, S)
    c2 = cols[None, None, :] + _MOVES[directions, 1][..., None]
    off = (r2 < 0) | (r2 >= n) | (c2 < 0) | (c2 >= n)
    next_state = np.where(off, np.arange(S), r2 * n + c2)
    reward = np.where(off, -1.0, np.where(next_state == goal, 10.0, 0.0))     # (K, A, S)
    prob = np.broadcast_to(probs[:, None, None], next_state.shape).copy()
    terminal = np.zeros(S, dtype=bool)
    terminal[goal] = True
    next_state[:, :, goal] = goal
    reward[:, :, goal] = 0.0
    R = (prob * reward).sum(axis=0)                                           # (A, S)
    return SuccessorMDP(next_state, prob, R, terminal, gamma)


def to_tabular(mdp: SuccessorMDP) -> TabularMDP:
    """The same MDP with a dense (S, A, S) transition table, for course_lib's kernels."""
    K, A, S = mdp.next_state.shape
    P = np.zeros((S, A, S))
    s_idx = np.broadcast_to(np.arange(S), (K, A, S))
    a_idx = np.broadcast_to(np.arange(A)[:, None], (K, A, S))
    np.add.at(P, (s_idx, a_idx, mdp.next_state), mdp.prob)                    # repeated successors add up
    return TabularMDP(P, mdp.R.T.copy(), mdp.gamma, terminal=mdp.terminal)


def value_iteration_vectorized(mdp: SuccessorMDP, tol: float = 1e-10, max_sweeps: int = 100_000):
    """(V*, greedy actions (S,), sweeps): every state and action updated in one array operation per sweep."""
    V = np.zeros(mdp.n_states)
    live = ~mdp.terminal
    for sweep in range(1, max_sweeps + 1):
        expected_next = mdp.prob[0] * V[mdp.next_state[0]]                    # (A, S)
        for k in range(1, mdp.prob.shape[0]):                                 # K = 3 terms
            expected_next += mdp.prob[k] * V[mdp.next_state[k]]
        Q = mdp.R + mdp.gamma * expected_next                                 # (A, S)
        V_new = np.where(live, Q.max(axis=0), 0.0)
        change = np.max(np.abs(V_new - V))
        V = V_new
        if change < tol:
            return V, np.argmax(Q, axis=0), sweep
    raise RuntimeError(f"no convergence in {max_sweeps} sweeps")


def value_iteration_state_loop(mdp: SuccessorMDP, tol: float = 1e-10, max_sweeps: int = 100_000):
    """(V*, greedy actions (S,), sweeps): a Python loop over states, numpy within each state's backup."""
    K, A, S = mdp.next_state.shape
    next_state = np.ascontiguousarray(mdp.next_state.transpose(2, 1, 0))     # (S, A, K): one block per state
    prob = np.ascontiguousarray(mdp.prob.transpose(2, 1, 0))
    R = np.ascontiguousarray(mdp.R.T)                                         # (S, A)
    V = np.zeros(S)
    for sweep in range(1, max_sweeps + 1):
        V_new = np.zeros(S)
        actions = np.zeros(S, dtype=np.int64)
        for s in range(S):
            if mdp.terminal[s]:
                continue
            q = R[s] + mdp.gamma * (prob[s] * V[next_state[s]]).sum(axis=1)   # (A,)
            actions[s] = np.argmax(q)
            V_new[s] = q[actions[s]]
        change = np.max(np.abs(V_new - V))
        V = V_new
        if change < tol:
            return V, actions, sweep
    raise RuntimeError(f"no convergence in {max_sweeps} sweeps")


def value_iteration_loop(mdp: SuccessorMDP, tol: float = 1e-10, max_sweeps: int = 100_000):
    """(V*, greedy actions (S,), sweeps): the textbook triple loop in plain Python, one state at a time."""
    K, A, S = mdp.next_state.shape
    # Per state, per action: a list of (next state, probability) pairs.
    succ = [[list(zip(mdp.next_state[:, a, s].tolist(), mdp.prob[:, a, s].tolist())) for a in range(A)] for s in range(S)]
    R = mdp.R.T.tolist()
    terminal = mdp.terminal.tolist()
    gamma = mdp.gamma
    V = [0.0] * S
    for sweep in range(1, max_sweeps + 1):
        V_new = [0.0] * S
        best_actions = [0] * S
        change = 0.0
        for s in range(S):
            if terminal[s]:
                continue
            best, best_a = -float("inf"), 0
            for a in range(A):
                q = R[s][a] + gamma * sum(p * V[s2] for s2, p in succ[s][a])
                if q > best:
                    best, best_a = q, a
            V_new[s], best_actions[s] = best, best_a
            change = max(change, abs(best - V[s]))
        V = V_new
        if change < tol:
            return np.array(V), np.array(best_actions), sweep
    raise RuntimeError(f"no convergence in {max_sweeps} sweeps")


def median_time(fn, repeats: int):
    """Median wall time and median CPU time of ``fn()`` over ``repeats`` calls, and the last result.

    On a shared machine the wall time includes waiting for a core; the CPU time
    of this process does not, so the two together say how much to trust a ratio.
    """
    walls, cpus, result = [], [], None
    for _ in range(max(1, repeats)):
        wall, cpu = time.perf_counter(), time.process_time()
        result = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def _q_values(mdp: SuccessorMDP, V: np.ndarray) -> np.ndarray:
    return mdp.R + mdp.gamma * (mdp.prob * V[mdp.next_state]).sum(axis=0)   # (A, S)


def _assert_optimal(mdp: SuccessorMDP, V_star: np.ndarray, actions: np.ndarray, who: str) -> None:
    """Every chosen action must be optimal (ties allowed), judged on the reference V*."""
    Q = _q_values(mdp, V_star)
    gap = Q.max(axis=0) - Q[actions, np.arange(mdp.n_states)]
    worst = float(np.max(np.where(mdp.terminal, 0.0, gap)))
    assert worst < 1e-6, f"{who}: a greedy action is worse than the best by {worst}"


def bench_size(n: int, repeats: int, loop_repeats: int, dense_max_states: int, tol: float = 1e-10) -> dict:
    """Time the solvers on the n x n grid and check that they agree."""
    mdp = slippery_grid(n)
    S = mdp.n_states
    t_vec, cpu_vec, (V_vec, act_vec, sweeps) = median_time(lambda: value_iteration_vectorized(mdp, tol), repeats)
    row = {"n": n, "S": S, "sweeps": sweeps, "vectorized_s": t_vec, "max_abs_diff": 0.0}
    V_ref = None
    for name, solver in (("state_loop", value_iteration_state_loop), ("python", value_iteration_loop)):
        t, cpu, (V, actions, n_sweeps) = median_time(lambda: solver(mdp, tol), loop_repeats)
        assert n_sweeps == sweeps, f"S={S}: {name} took {n_sweeps} sweeps, vectorized {sweeps}: not the same algorithm"
        diff = float(np.max(np.abs(V - V_vec)))
        assert diff < 1e-9, f"S={S}: {name} and vectorized values differ by {diff}"
        V_ref = V if V_ref is None else V_ref
        _assert_optimal(mdp, V, actions, name)
        row.update({f"{name}_s": t, f"{name}_speedup": t / t_vec, f"{name}_cpu_speedup": cpu / max(cpu_vec, 1e-9),
                    "max_abs_diff": max(row["max_abs_diff"], diff)})
    _assert_optimal(mdp, V_ref, act_vec, "vectorized")
    row.update(dense_s=None)
    if S <= dense_max_states:
        tabular = to_tabular(mdp)
        t_dense, _, (V_dense, pi_dense) = median_time(lambda: value_iteration(tabular, tol=tol), repeats)
        dense_diff = float(np.max(np.abs(V_dense - V_ref)))
        assert dense_diff < 1e-8, f"S={S}: library and loop values differ by {dense_diff}"
        _assert_optimal(mdp, V_ref, np.argmax(pi_dense, axis=1), "library value_iteration")
        row.update(dense_s=t_dense, max_abs_diff=max(row["max_abs_diff"], dense_diff))
    return row


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.1f} ms"


def format_table(rows: list[dict], repeats: int, loop_repeats: int) -> str:
    header = (f"{'grid':>9}{'S':>7}{'sweeps':>7}{'vectorized':>12}{'lib. dense':>13}{'state loop':>13}"
              f"{'pure Python':>13}{'state loop/vec':>16}{'(cpu)':>8}{'Python/vec':>12}{'(cpu)':>8}{'max|diff|':>10}")
    lines = [
        f"value iteration to tol=1e-10 on slippery n x n grids (gamma 0.9, K = 3 successors);"
        f" medians of {repeats} (loops: {loop_repeats})",
        header,
        "-" * len(header),
    ]
    for r in rows:
        lines.append(
            f"{r['n']:>4} x{r['n']:>3}{r['S']:>7}{r['sweeps']:>7}{_ms(r['vectorized_s']):>12}{_ms(r['dense_s']):>13}"
            f"{_ms(r['state_loop_s']):>13}{_ms(r['python_s']):>13}"
            f"{r['state_loop_speedup']:>15.1f}x{r['state_loop_cpu_speedup']:>7.1f}x"
            f"{r['python_speedup']:>11.1f}x{r['python_cpu_speedup']:>7.1f}x{r['max_abs_diff']:>10.1e}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5, 10, 20, 40, 100], help="n of the n x n grids")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats of the fast solvers (median)")
    parser.add_argument("--loop-repeats", type=int, default=1, help="timed repeats of each loop solver (median)")
    parser.add_argument("--dense-max-states", type=int, default=1600,
                        help="run the dense library kernel only up to this S (its table is S * 4 * S * 8 bytes)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.loop_repeats < 1:
        parser.error("--repeats and --loop-repeats must be >= 1")
    if any(n < 2 for n in args.sizes):
        parser.error("--sizes must all be >= 2")
    print(f"numpy {np.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    rows = [bench_size(n, args.repeats, args.loop_repeats, args.dense_max_states) for n in args.sizes]
    print(format_table(rows, args.repeats, args.loop_repeats))
    return rows


if __name__ == "__main__":
    main()
