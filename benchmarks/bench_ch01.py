"""Chapter 1 benchmarks: vectorised kernels against the loops they replace.

Run from the repository root::

    python benchmarks/bench_ch01.py             # default: 5 repeats
    python benchmarks/bench_ch01.py --repeats 9

Two measurements, each side by side in the same run (medians of
``time.perf_counter`` over the repeats, so one slow outlier does not count):

(a) ``discounted_returns`` on a (B, T) batch of float64 rewards with random
    episode ends, against a plain Python double loop over the same data;
(b) exact ``evaluate_policy`` (one linear solve) against
    ``iterative_policy_evaluation(tol=1e-10)`` (sweeps to convergence) on
    n x n gridworlds with the uniform random policy.

Every comparison also checks that both sides give the same numbers, so a
speed-up can never come from a wrong answer.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from course_lib.bellman import evaluate_policy, iterative_policy_evaluation
from course_lib.mdp import gridworld, uniform_policy
from course_lib.returns import discounted_returns


def median_time(fn, repeats: int):
    """Median wall time of ``fn()`` over ``repeats`` calls, and the last result."""
    times = []
    result = None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def returns_loop(rewards: np.ndarray, gamma: float, dones: np.ndarray) -> np.ndarray:
    """The plain Python version: one pass per sequence, backwards in time."""
    rows, done_rows = rewards.tolist(), dones.tolist()
    out = []
    for r, d in zip(rows, done_rows):
        T = len(r)
        G = [0.0] * T
        g = 0.0
        for t in range(T - 1, -1, -1):
            g = r[t] + (0.0 if d[t] else gamma * g)
            G[t] = g
        out.append(G)
    return np.array(out)


def returns_loop_numpy(rewards: np.ndarray, gamma: float, dones: np.ndarray) -> np.ndarray:
    """The loop as a student first writes it: indexing the numpy arrays element by element."""
    out = np.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        g = 0.0
        for t in range(rewards.shape[1] - 1, -1, -1):
            g = rewards[b, t] + gamma * g * (1 - dones[b, t])
            out[b, t] = g
    return out


def bench_returns(
    batch: int, horizon: int, repeats: int, loop_repeats: int, gamma: float = 0.99, seed: int = 0
) -> dict:
    """(a): vectorised ``discounted_returns`` vs the double loop on (batch, horizon) data."""
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(batch, horizon))
    dones = rng.random((batch, horizon)) < 0.01  # episodes of ~100 steps
    t_vec, G_vec = median_time(lambda: discounted_returns(rewards, gamma, dones), repeats)
    t_loop, G_loop = median_time(lambda: returns_loop(rewards, gamma, dones), loop_repeats)
    t_loop_np, G_loop_np = median_time(lambda: returns_loop_numpy(rewards, gamma, dones), 1)
    np.testing.assert_allclose(G_vec, G_loop, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(G_vec, G_loop_np, rtol=1e-10, atol=1e-10)
    return {
        "shape": (batch, horizon),
        "vectorised_s": t_vec,
        "loop_s": t_loop,
        "speedup": t_loop / t_vec,
        "loop_numpy_s": t_loop_np,
        "speedup_numpy_loop": t_loop_np / t_vec,
        "max_abs_diff": float(np.max(np.abs(G_vec - G_loop))),
        "repeats": repeats,
        "loop_repeats": loop_repeats,
    }


def grid_mdp(n: int, gamma: float = 0.9):
    """An n x n gridworld: -1 for bumping a wall, goal in the bottom-right corner."""
    return gridworld(
        n, n, gamma=gamma, wall_reward=-1.0, step_reward=0.0, terminal_cells=((n - 1, n - 1),)
    )


def bench_policy_evaluation(n: int, repeats: int, tol: float = 1e-10) -> dict:
    """(b): exact linear solve vs iterative sweeps on an n x n grid, uniform policy."""
    mdp = grid_mdp(n)  # built outside the timers: both methods get the same tables
    pi = uniform_policy(mdp)
    t_exact, V_exact = median_time(lambda: evaluate_policy(mdp, pi), repeats)
    t_iter, V_iter = median_time(lambda: iterative_policy_evaluation(mdp, pi, tol=tol), repeats)
    diff = float(np.max(np.abs(V_exact - V_iter)))
    # Stopping at a change below tol leaves an error of at most tol * gamma / (1 - gamma).
    assert diff <= 10 * tol * mdp.gamma / (1 - mdp.gamma) + 1e-12, f"n={n}: methods disagree by {diff}"
    return {
        "n": n,
        "S": mdp.n_states,
        "exact_s": t_exact,
        "iterative_s": t_iter,
        "ratio": t_iter / t_exact,
        "max_abs_diff": diff,
    }


def _fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:10.2f} ms"


def format_returns_table(row: dict) -> str:
    B, T = row["shape"]
    lines = [
        f"(a) discounted_returns, float64 rewards of shape (B={B}, T={T}), random dones",
        f"    {'method':<34}{'repeats':>8}{'median':>14}",
        f"    {'discounted_returns (vectorised)':<34}{row['repeats']:>8}{_fmt_time(row['vectorised_s']):>14}",
        f"    {'loop over Python lists':<34}{row['loop_repeats']:>8}{_fmt_time(row['loop_s']):>14}",
        f"    {'loop indexing the numpy arrays':<34}{1:>8}{_fmt_time(row['loop_numpy_s']):>14}",
        f"    speed-up: {row['speedup']:.1f}x over the list loop, {row['speedup_numpy_loop']:.1f}x over the"
        f" numpy-indexing loop    max |diff| = {row['max_abs_diff']:.2e}",
    ]
    return "\n".join(lines)


def format_policy_table(rows: list[dict], repeats: int) -> str:
    header = f"    {'grid':>7}{'S':>7}{'exact solve':>14}{'iterative':>14}{'iter/exact':>12}{'max |diff|':>12}"
    lines = [
        f"(b) evaluate_policy (exact) vs iterative_policy_evaluation(tol=1e-10),"
        f" gamma=0.9, uniform policy, median of {repeats}",
        header,
        "    " + "-" * (len(header) - 4),
    ]
    for r in rows:
        grid = f"{r['n']}x{r['n']}"
        lines.append(
            f"    {grid:>7}{r['S']:>7}{_fmt_time(r['exact_s']):>14}{_fmt_time(r['iterative_s']):>14}"
            f"{r['ratio']:>11.2f}x{r['max_abs_diff']:>12.1e}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    parser.add_argument(
        "--loop-repeats", type=int, default=None,
        help="repeats for the slow Python loop (default: min(3, repeats))",
    )
    parser.add_argument("--batch", type=int, default=1024, help="B for (a)")
    parser.add_argument("--horizon", type=int, default=1000, help="T for (a)")
    parser.add_argument(
        "--grid-sizes", type=int, nargs="+", default=[5, 20, 50], help="n for the n x n grids of (b)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    loop_repeats = args.loop_repeats if args.loop_repeats is not None else min(3, args.repeats)

    # Context for reading the numbers: BLAS threads share these cores with
    # anything else running, and the exact solve is sensitive to that.
    print(f"numpy {np.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    returns_row = bench_returns(args.batch, args.horizon, args.repeats, loop_repeats)
    print(format_returns_table(returns_row))
    print()
    policy_rows = [bench_policy_evaluation(n, args.repeats) for n in args.grid_sizes]
    print(format_policy_table(policy_rows, args.repeats))
    return {"returns": returns_row, "policy_evaluation": policy_rows}


if __name__ == "__main__":
    main()
