"""Chapter 4 benchmark: Q-learning on the cliff, many runs in one array program vs one run at a time.

Run from the repository root::

    python benchmarks/bench_ch04.py                  # 100 runs x 500 episodes, 3 repeats
    python benchmarks/bench_ch04.py --repeats 5

Three ways to get the same experiment (n_runs independent runs of Q-learning,
alpha = 0.5, epsilon = 0.1, n_episodes each, on Sutton and Barto's cliff):

(a) ``course_lib.td.q_learning(..., n_runs=N)``: all runs advance together;
(b) the same function called N times with ``n_runs=1``: numpy, one run at a time;
(c) a plain-Python Q-learner (lists and ``random``), one run at a time: the
    loop a first implementation would write.

A second table times (a) and (c) alone for larger N (``--scale-runs``): a
tabular step is a handful of scalar operations, which plain Python does about
as fast as numpy dispatches one array operation, so the vectorised learner
only pulls far ahead of (c) when there are many runs to share each dispatch.

Times are medians of ``time.perf_counter`` over the repeats ((b) and (c) are
slow, so they run ``--loop-repeats`` times). The three give different random
streams, so instead of equal numbers the script checks that they agree in
distribution: the mean online return of the second half of training must be
within a few standard errors across methods.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import statistics
import time

import numpy as np

from course_lib.mdp import CLIFF_START, cliff_walking
from course_lib.td import q_learning


def median_time(fn, repeats: int):
    """Median wall time of ``fn()`` over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def q_learning_python(n_episodes: int, alpha: float, epsilon: float, seed: int) -> list[float]:
    """One run of Q-learning on the cliff in plain Python (Sutton and Barto 2018, section 6.5).

    Returns the online return of each episode. Same tie-breaking as ``course_lib.td``
    (uniform among the maxima), different random numbers.
    """
    mdp = cliff_walking()
    next_state = mdp.P.argmax(axis=2).tolist()   # the cliff is deterministic
    R = mdp.R.tolist()
    terminal = mdp.terminal.tolist()
    S, A = mdp.n_states, mdp.n_actions
    rnd = random.Random(seed)
    Q = [[0.0] * A for _ in range(S)]

    def act(s):
        if rnd.random() < epsilon:
            return rnd.randrange(A)
        top = max(Q[s])
        return rnd.choice([a for a in range(A) if Q[s][a] == top])

    returns = []
    for _ in range(n_episodes):
        s, G = CLIFF_START, 0.0
        while not terminal[s]:
            a = act(s)
            s2, r = next_state[s][a], R[s][a]
            target = r + (0.0 if terminal[s2] else mdp.gamma * max(Q[s2]))
            Q[s][a] += alpha * (target - Q[s][a])
            G += r
            s = s2
        returns.append(G)
    return returns


def bench_q_learning(n_runs: int, n_episodes: int, repeats: int, loop_repeats: int,
                     alpha: float = 0.5, epsilon: float = 0.1, seed: int = 0) -> dict:
    """Time (a), (b) and (c) on the same experiment; check they agree in distribution."""
    mdp = cliff_walking()
    kwargs = dict(alpha=alpha, epsilon=epsilon)
    t_vec, (R_vec, _) = median_time(
        lambda: q_learning(mdp, CLIFF_START, n_episodes, n_runs=n_runs, seed=seed, **kwargs), repeats)
    t_one, R_one = median_time(
        lambda: np.concatenate([q_learning(mdp, CLIFF_START, n_episodes, n_runs=1, seed=seed + 1 + n, **kwargs)[0]
                                for n in range(n_runs)]), loop_repeats)
    t_py, R_py = median_time(
        lambda: np.array([q_learning_python(n_episodes, alpha, epsilon, seed + 1000 + n) for n in range(n_runs)]),
        loop_repeats)
    late = slice(n_episodes // 2, None)
    means = {k: float(R[:, late].mean()) for k, R in (("vectorised", R_vec), ("one_at_a_time", R_one), ("python", R_py))}
    # Standard error of a method's mean, from the spread across its runs.
    se = max(float(R[:, late].mean(axis=1).std(ddof=1)) / np.sqrt(n_runs) if n_runs > 1 else 0.0
             for R in (R_vec, R_one, R_py))
    return {
        "n_runs": n_runs,
        "n_episodes": n_episodes,
        "vectorised_s": t_vec,
        "one_at_a_time_s": t_one,
        "python_s": t_py,
        "speedup_vs_one_at_a_time": t_one / t_vec,
        "speedup_vs_python": t_py / t_vec,
        "late_mean_return": means,
        "late_mean_se": se,
        "repeats": repeats,
        "loop_repeats": loop_repeats,
    }


def bench_scaling(n_runs: int, n_episodes: int, repeats: int, alpha: float = 0.5, epsilon: float = 0.1, seed: int = 0) -> dict:
    """(a) against (c) only, for a larger N, where (b) would take too long to wait for."""
    mdp = cliff_walking()
    t_vec, (R_vec, _) = median_time(
        lambda: q_learning(mdp, CLIFF_START, n_episodes, n_runs=n_runs, alpha=alpha, epsilon=epsilon, seed=seed), repeats)
    t_py, R_py = median_time(
        lambda: np.array([q_learning_python(n_episodes, alpha, epsilon, seed + 1000 + n) for n in range(n_runs)]), 1)
    late = slice(n_episodes // 2, None)
    return {"n_runs": n_runs, "vectorised_s": t_vec, "python_s": t_py, "speedup_vs_python": t_py / t_vec,
            "late_mean_return": {"vectorised": float(R_vec[:, late].mean()), "python": float(R_py[:, late].mean())}}


def format_table(row: dict) -> str:
    N, E = row["n_runs"], row["n_episodes"]
    m = row["late_mean_return"]
    lines = [
        f"Q-learning on cliff walking, {N} runs x {E} episodes (alpha 0.5, epsilon 0.1)",
        f"    {'method':<42}{'repeats':>8}{'median':>12}{'late return':>14}",
        f"    {'(a) td.q_learning(n_runs=N), vectorised':<42}{row['repeats']:>8}{row['vectorised_s']:>11.2f}s{m['vectorised']:>14.1f}",
        f"    {'(b) td.q_learning(n_runs=1), N calls':<42}{row['loop_repeats']:>8}{row['one_at_a_time_s']:>11.2f}s{m['one_at_a_time']:>14.1f}",
        f"    {'(c) plain Python, N runs':<42}{row['loop_repeats']:>8}{row['python_s']:>11.2f}s{m['python']:>14.1f}",
        f"    speed-up of (a): {row['speedup_vs_one_at_a_time']:.1f}x over (b), {row['speedup_vs_python']:.1f}x over (c);"
        f" late return = mean online return of the second half (standard error <= {row['late_mean_se']:.1f})",
    ]
    return "\n".join(lines)


def format_scaling(rows: list[dict], n_episodes: int) -> str:
    lines = [f"As N grows ({n_episodes} episodes per run): (a) vectorised vs (c) plain Python",
             f"    {'N':>6}{'(a)':>10}{'(c)':>10}{'speed-up':>10}"]
    lines += [f"    {r['n_runs']:>6}{r['vectorised_s']:>9.2f}s{r['python_s']:>9.2f}s{r['speedup_vs_python']:>9.1f}x" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100, help="independent runs N")
    parser.add_argument("--episodes", type=int, default=500, help="episodes per run")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of (a) (median)")
    parser.add_argument("--loop-repeats", type=int, default=1, help="timed repeats of (b) and (c)")
    parser.add_argument("--scale-runs", type=int, nargs="*", default=[1000],
                        help="larger N for which only (a) and (c) are timed (none: skip)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.loop_repeats < 1:
        parser.error("--repeats and --loop-repeats must be >= 1")
    if args.runs < 2 or args.episodes < 2:
        parser.error("--runs and --episodes must be >= 2")
    print(f"numpy {np.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    row = bench_q_learning(args.runs, args.episodes, args.repeats, args.loop_repeats)
    print(format_table(row))
    # The three implementations learn the same thing: same late return within noise.
    means = row["late_mean_return"].values()
    spread = max(means) - min(means)
    assert spread <= 6 * row["late_mean_se"] + 1.0, f"methods disagree: {row['late_mean_return']}"
    row["scaling"] = [bench_scaling(n, args.episodes, args.repeats) for n in args.scale_runs]
    if row["scaling"]:
        print()
        print(format_scaling(row["scaling"], args.episodes))
    return row


if __name__ == "__main__":
    main()
