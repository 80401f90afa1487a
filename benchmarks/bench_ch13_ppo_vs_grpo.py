"""Chapter 13 benchmark: PPO (with a critic) against GRPO (without) on the sums, same budget.

Run from the repository root::

    python benchmarks/bench_ch13_ppo_vs_grpo.py                 # full base model, 120 s per method
    python benchmarks/bench_ch13_ppo_vs_grpo.py --seconds 600   # the chapter's 10-minute budget
    python benchmarks/bench_ch13_ppo_vs_grpo.py --quick         # smoke test: FAST model, a few steps

Each method runs in its own fresh Python process (``multiprocessing`` with "spawn"), so its
peak resident memory (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) is its own: the
interpreter, torch, the models, the optimiser states and the activations together. Each
trains the same base model on the same verifier (1 for the exact sum, else 0) for the same
wall-clock budget, evaluating held-out greedy accuracy ten times along the way and at the
end (evaluation time is not counted in the budget), so the table also says how many seconds
of training each method needed to first reach 80% and 90%. The model-memory column counts numbers instead: weights of every
model kept, plus gradients and two Adam moments for each trained one.

Figures printed side by side: steps, completions sampled, wall and CPU seconds, accuracy
before and after, accuracy points gained per wall-clock second, peak RSS, model memory,
and GRPO / PPO ratios. Timings depend on the machine's load: run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import multiprocessing as mp
import platform
import resource
import sys
import time


def _prompts_fn(task, n):
    return lambda step, rng: task.prompts(n, rng, "train")


def seconds_to_reach(curve: list[tuple[float, float]], level: float) -> float | None:
    """The first training time in ``curve`` [(seconds, accuracy), ...] whose accuracy is at least ``level``; None if none."""
    return next((seconds for seconds, accuracy in curve if accuracy >= level), None)


def run_method(method: str, seconds: float, fast: bool, threads: int, max_steps: int, n_eval: int) -> dict:
    """Train one method for ``seconds`` of wall time (or ``max_steps``) in this process; return its figures."""
    import numpy as np
    import torch

    from course_lib.gpt import with_value_head
    from course_lib.grpo import frozen_copy, grpo_config, grpo_step, verifier_reward_fn
    from course_lib.pretrain import base_config, greedy_accuracy, load_or_pretrain, make_tasks
    from course_lib.rlhf import RLHFConfig, make_state, ppo_step
    from course_lib.tokenizer import CharTokenizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = base_config(fast)
    policy, _ = load_or_pretrain(base, progress=False)
    task, _ = make_tasks(base)
    reward_fn = verifier_reward_fn(task)
    reference = frozen_copy(policy)
    before = greedy_accuracy(policy, task, n=n_eval)
    grpo = grpo_config(fast)
    rng = np.random.default_rng(0)
    tokenizer = CharTokenizer()
    T = task.max_digits + 2
    if method == "GRPO":
        config = dataclasses.replace(grpo, max_new_tokens=T)
        optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, fused=True)
        generator = torch.Generator().manual_seed(0)
        kept, trained = [policy, reference], [policy]
        per_step = config.prompts_per_step * config.group_size

        def step_fn():
            grpo_step(policy, reference, optimizer, reward_fn, task.prompts(config.prompts_per_step, rng, "train"), config,
                      tokenizer, generator)
    elif method == "PPO":
        critic = with_value_head(copy.deepcopy(policy))
        # Same completions per step as GRPO, same learning rate and KL coefficient; PPO's usual
        # two passes over two minibatches, and a critic learning faster than the policy.
        batch = grpo.prompts_per_step * grpo.group_size
        config = RLHFConfig(steps=max_steps, batch_size=batch, max_new_tokens=T, epochs=2, minibatches=2, lr=grpo.lr,
                            critic_lr=3 * grpo.lr, kl_coef=grpo.beta, kl_target=None, seed=0)
        state = make_state(policy, critic, config, tokenizer)
        kept, trained = [policy, reference, critic], [policy, critic]
        per_step = batch

        def step_fn():
            ppo_step(policy, reference, critic, reward_fn, task.prompts(batch, rng, "train"), state, config)
    else:
        raise ValueError(f"method must be 'GRPO' or 'PPO'; got {method!r}")

    steps, wall, cpu = 0, 0.0, 0.0
    curve, next_eval = [(0.0, before)], seconds / 10
    while steps < max_steps and wall < seconds:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        step_fn()
        wall, cpu, steps = wall + time.perf_counter() - wall0, cpu + time.process_time() - cpu0, steps + 1
        if wall >= next_eval and wall < seconds:  # the clock is stopped while we evaluate
            curve.append((wall, greedy_accuracy(policy, task, n=n_eval)))
            next_eval += seconds / 10
    after = greedy_accuracy(policy, task, n=n_eval)
    curve.append((wall, after))
    numbers = sum(m.num_parameters() for m in kept) + 3 * sum(m.num_parameters() for m in trained)
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"method": method, "steps": steps, "completions": steps * per_step, "wall_s": wall, "cpu_s": cpu,
            "accuracy_before": before, "accuracy_after": after,
            "points_per_s": 100 * (after - before) / wall if wall > 0 else float("nan"), "curve": curve,
            "s_to_80": seconds_to_reach(curve, 0.8), "s_to_90": seconds_to_reach(curve, 0.9),
            "peak_rss_mib": rss / 2**20, "model_mib": numbers * 4 / 2**20}


def _worker(queue, *args):
    queue.put(run_method(*args))


def run_in_subprocess(*args) -> dict:
    """``run_method`` in a fresh spawned process, so its peak memory is measured alone."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_worker, args=(queue, *args))
    process.start()
    result = queue.get()
    process.join()
    return result


def table(results: list[dict]) -> str:
    rows = [("steps", "{:d}", "steps"), ("completions sampled", "{:d}", "completions"), ("wall seconds", "{:.1f}", "wall_s"),
            ("CPU seconds", "{:.1f}", "cpu_s"), ("accuracy before", "{:.1%}", "accuracy_before"),
            ("accuracy after", "{:.1%}", "accuracy_after"), ("accuracy points / wall s", "{:+.3f}", "points_per_s"),
            ("wall s to 80% (first check)", "{:.0f}", "s_to_80"), ("wall s to 90% (first check)", "{:.0f}", "s_to_90"),
            ("peak RSS (MiB)", "{:.0f}", "peak_rss_mib"), ("model memory (MiB)", "{:.1f}", "model_mib")]
    by = {r["method"]: r for r in results}
    lines = [f"{'':28s}{'PPO':>12s}{'GRPO':>12s}{'GRPO / PPO':>12s}"]
    for label, fmt, key in rows:
        ppo, grpo = by["PPO"][key], by["GRPO"][key]
        ratio = f"{grpo / ppo:.2f}" if None not in (ppo, grpo) and ppo != 0 else "-"
        cells = ["never" if v is None else fmt.format(v) for v in (ppo, grpo)]
        lines.append(f"{label:28s}{cells[0]:>12s}{cells[1]:>12s}{ratio:>12s}")
    for r in results:
        lines.append(f"{r['method']} accuracy by training second: "
                     + ", ".join(f"{t:.0f}s {a:.0%}" for t, a in r["curve"]))
    return "\n".join(lines)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120.0, help="wall-clock training budget per method")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per method")
    parser.add_argument("--fast", action="store_true", help="the FAST base model (1-2 digit sums)")
    parser.add_argument("--max-steps", type=int, default=100_000, help="stop earlier after this many steps")
    parser.add_argument("--n-eval", type=int, default=500, help="held-out prompts for the accuracy")
    parser.add_argument("--quick", action="store_true", help="smoke test: FAST model, 2 steps each, 100 eval prompts")
    parser.add_argument("--in-process", action="store_true", help="no subprocesses (peak RSS then covers both runs)")
    args = parser.parse_args(argv)
    if args.quick:
        args.fast, args.max_steps, args.n_eval, args.seconds = True, 2, 100, 60.0
    print(f"python {platform.python_version()}, {platform.machine()}, {args.threads} torch threads, "
          f"{'FAST' if args.fast else 'full'} base model, budget {args.seconds:.0f} s or {args.max_steps} steps per method")
    results = []
    for method in ("PPO", "GRPO"):
        call = run_method if args.in_process else run_in_subprocess
        results.append(call(method, args.seconds, args.fast, args.threads, args.max_steps, args.n_eval))
    print(table(results))
    return results


if __name__ == "__main__":
    main()
