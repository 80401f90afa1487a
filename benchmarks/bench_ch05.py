"""Chapter 5 benchmark: DQN training throughput on CartPole, in environment steps and gradient updates per second.

Run from the repository root::

    python benchmarks/bench_ch05.py                 # default sizes, 3 repeats
    python benchmarks/bench_ch05.py --threads 2     # torch intra-op threads (default 1)

Four measurements, each the median of ``--repeats`` timed runs (``time.perf_counter``):

(a) gymnasium's numpy-batched CartPole alone, random actions: environment steps/s
    for several numbers of environments N;
(b) acting as the chapter does: Q-network forward, epsilon-greedy, vector step,
    replay-buffer insert with the reset-step mask: environment steps/s;
(c) one DQN gradient update (sample, target network, Huber loss, backward, Adam):
    updates/s for several batch sizes;
(d) the chapter's training loop end to end (N = 8, one update per vector step):
    environment steps/s and updates/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

from course_lib.dqn import QNetwork, ReplayBuffer, dqn_huber_loss, make_cartpole, q_learning_target, sync_target
from course_lib.td import epsilon_greedy


def median_time(fn, repeats: int):
    """Median wall time of ``fn()`` over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_env(num_envs: int, n_steps: int, repeats: int, seed: int = 0) -> dict:
    """(a): vector CartPole with random actions, no learning."""
    envs, _ = make_cartpole(num_envs, seed=seed)
    actions = np.random.default_rng(seed).integers(2, size=(n_steps, num_envs))

    def run():
        for t in range(n_steps):
            envs.step(actions[t])

    seconds, _ = median_time(run, repeats)
    return {"num_envs": num_envs, "vector_steps": n_steps, "seconds": seconds, "env_steps_per_s": num_envs * n_steps / seconds}


def _fill(buffer: ReplayBuffer, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    obs = rng.normal(scale=0.1, size=(n, 4)).astype(np.float32)
    buffer.add(obs, rng.integers(2, size=n), np.ones(n, np.float32), obs + 0.01, rng.random(n) < 0.05, keep=np.ones(n, bool))


def bench_acting(num_envs: int, n_steps: int, repeats: int, hidden=(128, 128), seed: int = 0) -> dict:
    """(b): what one vector step of training costs without the gradient update."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    q_net = QNetwork(4, 2, hidden)
    envs, first_obs = make_cartpole(num_envs, seed=seed)
    buffer = ReplayBuffer(max(num_envs * n_steps, 1), 4)

    def run():
        obs, prev_done = first_obs, np.zeros(num_envs, bool)
        buffer.pos = buffer.size = 0
        for _ in range(n_steps):
            with torch.no_grad():
                q_values = q_net(torch.as_tensor(obs)).numpy()
            actions = epsilon_greedy(q_values, 0.1, rng)
            next_obs, rewards, terminated, truncated, _ = envs.step(actions)
            buffer.add(obs, actions, rewards, next_obs, terminated, keep=~prev_done)
            prev_done, obs = terminated | truncated, next_obs

    seconds, _ = median_time(run, repeats)
    return {"num_envs": num_envs, "vector_steps": n_steps, "seconds": seconds, "env_steps_per_s": num_envs * n_steps / seconds}


def bench_updates(batch_size: int, n_updates: int, repeats: int, hidden=(128, 128), seed: int = 0) -> dict:
    """(c): gradient updates alone, on a buffer filled with synthetic transitions."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    q_net, target_net = QNetwork(4, 2, hidden), QNetwork(4, 2, hidden)
    sync_target(target_net, q_net)
    optimizer = torch.optim.Adam(q_net.parameters(), lr=5e-4)
    buffer = ReplayBuffer(10_000, 4)
    _fill(buffer, 10_000, seed)

    def run():
        for _ in range(n_updates):
            batch = buffer.sample(batch_size, rng)
            with torch.no_grad():
                targets = q_learning_target(batch.rewards, target_net(batch.next_obs), batch.terminated, 0.99)
            loss = dqn_huber_loss(q_net(batch.obs), batch.actions, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return loss.item()

    seconds, loss = median_time(run, repeats)
    assert np.isfinite(loss)
    return {"batch_size": batch_size, "updates": n_updates, "seconds": seconds, "updates_per_s": n_updates / seconds}


def bench_training(n_steps: int, repeats: int, num_envs: int = 8, batch_size: int = 128, hidden=(128, 128),
                   target_every: int = 500, seed: int = 0) -> dict:
    """(d): the chapter's loop, acting and one update per vector step, from an empty buffer."""

    def run():
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        envs, obs = make_cartpole(num_envs, seed=seed)
        q_net, target_net = QNetwork(4, 2, hidden), QNetwork(4, 2, hidden)
        sync_target(target_net, q_net)
        optimizer = torch.optim.Adam(q_net.parameters(), lr=5e-4)
        buffer = ReplayBuffer(50_000, 4)
        prev_done, n_updates = np.zeros(num_envs, bool), 0
        for step in range(n_steps):
            epsilon = max(0.05, 1.0 - step / max(1, n_steps // 2))
            with torch.no_grad():
                q_values = q_net(torch.as_tensor(obs)).numpy()
            actions = epsilon_greedy(q_values, epsilon, rng)
            next_obs, rewards, terminated, truncated, _ = envs.step(actions)
            buffer.add(obs, actions, rewards, next_obs, terminated, keep=~prev_done)
            prev_done, obs = terminated | truncated, next_obs
            if len(buffer) >= batch_size:
                batch = buffer.sample(batch_size, rng)
                with torch.no_grad():
                    targets = q_learning_target(batch.rewards, target_net(batch.next_obs), batch.terminated, 0.99)
                loss = dqn_huber_loss(q_net(batch.obs), batch.actions, targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                n_updates += 1
                if n_updates % target_every == 0:
                    sync_target(target_net, q_net)
        return n_updates

    seconds, n_updates = median_time(run, repeats)
    return {"num_envs": num_envs, "vector_steps": n_steps, "seconds": seconds, "updates": n_updates,
            "env_steps_per_s": num_envs * n_steps / seconds, "updates_per_s": n_updates / seconds}


def _rate(x: float) -> str:
    return f"{x / 1e6:8.2f} M/s" if x >= 1e6 else (f"{x / 1e3:8.1f} k/s" if x >= 1e3 else f"{x:8.0f}  /s")


def format_report(env_rows, acting_rows, update_rows, training_row) -> str:
    lines = ["(a) vector CartPole alone (random actions)", f"    {'N envs':>8}{'vector steps':>14}{'env steps':>14}"]
    lines += [f"    {r['num_envs']:>8}{r['vector_steps']:>14}{_rate(r['env_steps_per_s']):>14}" for r in env_rows]
    lines += ["(b) acting: Q-network forward + epsilon-greedy + step + buffer insert", f"    {'N envs':>8}{'vector steps':>14}{'env steps':>14}"]
    lines += [f"    {r['num_envs']:>8}{r['vector_steps']:>14}{_rate(r['env_steps_per_s']):>14}" for r in acting_rows]
    lines += ["(c) gradient updates (sample, target net, Huber loss, backward, Adam), MLP 4-128-128-2",
              f"    {'batch':>8}{'updates':>14}{'updates':>14}"]
    lines += [f"    {r['batch_size']:>8}{r['updates']:>14}{_rate(r['updates_per_s']):>14}" for r in update_rows]
    t = training_row
    lines += [f"(d) the chapter's training loop, N = {t['num_envs']}, one update per vector step, batch 128",
              f"    {t['vector_steps']} vector steps in {t['seconds']:.2f} s: {_rate(t['env_steps_per_s']).strip()} environment steps, "
              f"{_rate(t['updates_per_s']).strip()} gradient updates"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--env-sizes", type=int, nargs="+", default=[1, 8, 64, 1024], help="N for (a) and (b)")
    parser.add_argument("--env-steps", type=int, default=2000, help="vector steps per timing in (a) and (b)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128, 256], help="batch sizes for (c)")
    parser.add_argument("--updates", type=int, default=500, help="updates per timing in (c)")
    parser.add_argument("--train-steps", type=int, default=1000, help="vector steps of the training loop in (d)")
    args = parser.parse_args(argv)
    if min(args.repeats, args.threads, args.env_steps, args.updates, args.train_steps) < 1:
        parser.error("--repeats, --threads, --env-steps, --updates and --train-steps must be >= 1")
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, "
          f"Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    env_rows = [bench_env(n, args.env_steps, args.repeats) for n in args.env_sizes]
    acting_rows = [bench_acting(n, args.env_steps, args.repeats) for n in args.env_sizes]
    update_rows = [bench_updates(b, args.updates, args.repeats) for b in args.batch_sizes]
    training_row = bench_training(args.train_steps, args.repeats)
    print(format_report(env_rows, acting_rows, update_rows, training_row))
    return {"env": env_rows, "acting": acting_rows, "updates": update_rows, "training": training_row}


if __name__ == "__main__":
    main()
