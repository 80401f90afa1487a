"""Chapter 9 benchmark: seconds for PPO to solve CartPole-v1, median over seeds.

Run from the repository root::

    python benchmarks/bench_ch09_ppo.py               # 5 seeds, the chapter's full PPOConfig
    python benchmarks/bench_ch09_ppo.py --seeds 9 --threads 2

"Solved" means the mean return of the last ``return_window`` (20) finished training
episodes reaches ``target_return`` (475), CartPole-v1's threshold. Each run stops
there; a run that never gets there within ``--total-steps`` counts as infinitely slow.
Times count from the start of ``train_ppo`` (environment and network creation
included), as wall-clock seconds and as CPU seconds of this process. A tiny
warm-up run first pays the one-time costs (lazy imports inside torch.optim and
tqdm, about a second), so that seed 0 is timed like the others. On a shared
machine both clocks depend on the load (the load average is printed before and
after): wall time because other processes take turns on the cores, CPU time
because they share caches and memory bandwidth.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import statistics

import numpy as np
import torch

from course_lib.ppo import PPOConfig, train_ppo


def run_seed(seed: int, total_steps: int, target: float, **overrides) -> dict:
    """One PPO run that stops at the target; returns its steps, wall and CPU seconds (inf if unsolved)."""
    cfg = PPOConfig(seed=seed, total_steps=total_steps, target_return=target, stop_at_target=True, **overrides)
    result = train_ppo(cfg, progress=False)
    last = result.log[-1]
    if result.solved_at is None:
        return {"seed": seed, "solved": False, "steps": math.inf, "wall_s": math.inf, "cpu_s": math.inf,
                "final_mean_return": last["mean_return"], "ran_wall_s": last["wall_s"]}
    return {"seed": seed, "solved": True, **{k: result.solved_at[k] for k in ("steps", "wall_s", "cpu_s")},
            "final_mean_return": last["mean_return"], "ran_wall_s": last["wall_s"]}


def summarise(rows: list[dict]) -> dict:
    return {k: statistics.median(r[k] for r in rows) for k in ("steps", "wall_s", "cpu_s")}


def format_table(rows: list[dict], summary: dict, target: float) -> str:
    lines = [
        f"PPO on CartPole-v1: time until the mean return of the last 20 episodes reaches {target:g}",
        f"    {'seed':>5}{'solved':>8}{'env steps':>11}{'wall s':>9}{'CPU s':>8}",
    ]
    for r in rows:
        lines.append(f"    {r['seed']:>5}{'yes' if r['solved'] else 'NO':>8}{r['steps']:>11.0f}{r['wall_s']:>9.2f}{r['cpu_s']:>8.2f}")
    lines.append(f"    {'median':>5}{'':>8}{summary['steps']:>11.0f}{summary['wall_s']:>9.2f}{summary['cpu_s']:>8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5, help="number of seeds (0, 1, ...); the median is reported")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the networks are tiny: 1 is fastest)")
    parser.add_argument("--total-steps", type=int, default=PPOConfig.total_steps, help="give up after this many env steps")
    parser.add_argument("--target", type=float, default=PPOConfig.target_return, help="mean return that counts as solved")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    cfg = PPOConfig()
    print(f"torch {torch.__version__} ({args.threads} thread(s)), numpy {np.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, load average before: {os.getloadavg()[0]:.1f}")
    print(f"config: {cfg.num_envs} envs x {cfg.num_steps} steps per update, {cfg.epochs} epochs x {cfg.minibatches} minibatches, "
          f"lr {cfg.lr}, clip {cfg.clip_eps}\n")
    train_ppo(PPOConfig(num_steps=32, total_steps=256, epochs=1, torch_threads=args.threads), progress=False)  # warm-up
    rows = [run_seed(seed, args.total_steps, args.target, torch_threads=args.threads) for seed in range(args.seeds)]
    summary = summarise(rows)
    print(format_table(rows, summary, args.target))
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")
    return {"runs": rows, "median": summary}


if __name__ == "__main__":
    main()
