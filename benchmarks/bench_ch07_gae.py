"""Chapter 7 benchmark: ``course_lib.returns.gae`` against per-step loops, and against a plain copy.

Run from the repository root::

    python benchmarks/bench_ch07_gae.py               # default sizes, 5 repeats
    python benchmarks/bench_ch07_gae.py --repeats 9

For each (B, T) in {(8, 128), (256, 512), (4096, 1024)}, on float64 rewards and
values and boolean dones (about 1% of steps end an episode), it times (medians of
``time.perf_counter`` over the repeats, all in the same run):

- ``gae(rewards, values, gamma, lam, dones)`` on (B, T) arrays, as the course calls it (for
  numpy arrays, one compiled pass of the recursion: see ``course_lib.returns._compiled_gae``);
- the plain per-step loop: one sequence at a time, one step at a time, Python floats
  (the reference every GAE test writes, and the shape of most textbook code);
- for context, the per-step loop as RL libraries write it, one time step at a time but all B
  sequences at once, on time-major (T, B) buffers: with numpy arrays and with torch tensors
  (CleanRL's ``lastgaelam`` loop). They get their native layout for free (prepared outside the timer);
- a plain copy of the same inputs (``np.copyto`` into preallocated arrays), for the bandwidth
  the machine can reach at all.

Achieved bandwidth counts the bytes GAE must touch at least once: read rewards, values and
dones, write the advantages. Copy bandwidth counts read + write of the inputs. Every method's
output is checked against ``gae`` so no speed-up can come from a wrong answer.

Targets (issue 4): at least 20x the plain per-step loop at (256, 512), and at least a
quarter of copy bandwidth at (4096, 1024).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np

from course_lib.returns import gae

SIZES = ((8, 128), (256, 512), (4096, 1024))
GAMMA, LAM = 0.99, 0.95


def median_time(fn, repeats: int):
    """Median wall time of ``fn()`` over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def gae_python_loop(rewards: np.ndarray, values: np.ndarray, dones: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """The plain per-step loop: each sequence backwards in time, on Python floats."""
    out = []
    for r, v, d in zip(rewards.tolist(), values.tolist(), dones.tolist()):
        T = len(r)
        adv = [0.0] * T
        lastgaelam = 0.0
        for t in range(T - 1, -1, -1):
            nextnonterminal = 0.0 if d[t] else 1.0
            delta = r[t] + gamma * v[t + 1] * nextnonterminal - v[t]
            lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
            adv[t] = lastgaelam
        out.append(adv)
    return np.array(out)


def gae_numpy_time_loop(rewards_tb: np.ndarray, values_tb: np.ndarray, dones_tb: np.ndarray, gamma: float,
                        lam: float) -> np.ndarray:
    """One time step at a time over (T, B) buffers, every sequence at once (the usual library loop)."""
    T = rewards_tb.shape[0]
    adv = np.zeros_like(rewards_tb)
    lastgaelam = np.zeros(rewards_tb.shape[1])
    for t in reversed(range(T)):
        nextnonterminal = 1.0 - dones_tb[t]
        delta = rewards_tb[t] + gamma * values_tb[t + 1] * nextnonterminal - values_tb[t]
        lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
        adv[t] = lastgaelam
    return adv


def gae_torch_time_loop(rewards_tb, values_tb, dones_tb, gamma: float, lam: float):
    """CleanRL's loop: the same recursion on torch tensors of shape (T, B)."""
    import torch

    T = rewards_tb.shape[0]
    adv = torch.zeros_like(rewards_tb)
    lastgaelam = torch.zeros(rewards_tb.shape[1], dtype=rewards_tb.dtype)
    for t in reversed(range(T)):
        nextnonterminal = 1.0 - dones_tb[t]
        delta = rewards_tb[t] + gamma * values_tb[t + 1] * nextnonterminal - values_tb[t]
        lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
        adv[t] = lastgaelam
    return adv


def make_data(B: int, T: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    rewards = rng.normal(size=(B, T))
    values = rng.normal(size=(B, T + 1))
    dones = rng.random((B, T)) < 0.01
    return rewards, values, dones


def bench_size(B: int, T: int, repeats: int, loop_repeats: int, with_torch: bool = True) -> dict:
    rewards, values, dones = make_data(B, T)
    t_gae, adv = median_time(lambda: gae(rewards, values, GAMMA, LAM, dones), repeats)
    t_loop, adv_loop = median_time(lambda: gae_python_loop(rewards, values, dones, GAMMA, LAM), loop_repeats)
    np.testing.assert_allclose(adv_loop, adv, rtol=1e-9, atol=1e-9)

    # library-style loops on their native time-major layout (prepared outside the timer)
    r_tb, v_tb, d_tb = rewards.T.copy(), values.T.copy(), dones.T.astype(np.float64)
    t_np, adv_np = median_time(lambda: gae_numpy_time_loop(r_tb, v_tb, d_tb, GAMMA, LAM), repeats)
    np.testing.assert_allclose(adv_np.T, adv, rtol=1e-9, atol=1e-9)
    t_torch = float("nan")
    if with_torch:
        import torch

        rt, vt, dt = torch.from_numpy(r_tb), torch.from_numpy(v_tb), torch.from_numpy(d_tb)
        t_torch, adv_t = median_time(lambda: gae_torch_time_loop(rt, vt, dt, GAMMA, LAM), repeats)
        np.testing.assert_allclose(adv_t.numpy().T, adv, rtol=1e-9, atol=1e-9)

    # a plain copy of the same inputs
    srcs = (rewards, values, dones)
    dsts = tuple(np.empty_like(a) for a in srcs)

    def copy_all():
        for s, d in zip(srcs, dsts):
            np.copyto(d, s)

    t_copy, _ = median_time(copy_all, repeats)
    in_bytes = sum(a.nbytes for a in srcs)
    gae_bytes = in_bytes + adv.nbytes
    return {
        "shape": (B, T),
        "gae_s": t_gae,
        "loop_s": t_loop,
        "numpy_time_loop_s": t_np,
        "torch_time_loop_s": t_torch,
        "copy_s": t_copy,
        "speedup_vs_loop": t_loop / t_gae,
        "speedup_vs_numpy_time_loop": t_np / t_gae,
        "speedup_vs_torch_time_loop": t_torch / t_gae,
        "gae_GBps": gae_bytes / t_gae / 1e9,
        "copy_GBps": 2 * in_bytes / t_copy / 1e9,
        "fraction_of_copy": (gae_bytes / t_gae) / (2 * in_bytes / t_copy),
        "repeats": repeats,
        "loop_repeats": loop_repeats,
    }


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:10.2f} ms" if np.isfinite(seconds) else f"{'-':>13}"


def format_table(rows: list[dict]) -> str:
    header = (f"{'B x T':>12}{'gae':>13}{'plain loop':>13}{'ratio':>8}{'numpy t-loop':>14}{'ratio':>7}"
              f"{'torch t-loop':>14}{'ratio':>7}{'gae GB/s':>10}{'copy GB/s':>11}{'of copy':>9}")
    lines = [f"gae(gamma={GAMMA}, lam={LAM}), float64, ~1% dones; medians", header, "-" * len(header)]
    for r in rows:
        B, T = r["shape"]
        lines.append(
            f"{f'{B} x {T}':>12}{_ms(r['gae_s'])}{_ms(r['loop_s'])}{r['speedup_vs_loop']:>7.1f}x"
            f"{_ms(r['numpy_time_loop_s'])}{r['speedup_vs_numpy_time_loop']:>6.1f}x"
            f"{_ms(r['torch_time_loop_s'])}{r['speedup_vs_torch_time_loop']:>6.1f}x"
            f"{r['gae_GBps']:>10.2f}{r['copy_GBps']:>11.2f}{r['fraction_of_copy']:>8.0%} "
        )
    return "\n".join(lines)


def check_targets(rows: list[dict]) -> list[str]:
    """The issue's two targets, as lines saying met or missed."""
    by_shape = {r["shape"]: r for r in rows}
    out = []
    if (256, 512) in by_shape:
        s = by_shape[(256, 512)]["speedup_vs_loop"]
        out.append(f"target >= 20x the plain loop at (256, 512): {s:.1f}x -> {'met' if s >= 20 else 'MISSED'}")
    if (4096, 1024) in by_shape:
        f = by_shape[(4096, 1024)]["fraction_of_copy"]
        out.append(f"target >= 1/4 of copy bandwidth at (4096, 1024): {f:.0%} -> {'met' if f >= 0.25 else 'MISSED'}")
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per measurement (median)")
    parser.add_argument("--loop-repeats", type=int, default=None,
                        help="repeats of the slow Python loop (default: min(3, repeats); 1 at the largest size)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, metavar="B,T",
                        help="flat list B1 T1 B2 T2 ... (default: 8 128 256 512 4096 1024)")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch loop")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.sizes is not None and (len(args.sizes) % 2 or min(args.sizes) < 1):
        parser.error("--sizes needs pairs of positive integers B T")
    sizes = SIZES if args.sizes is None else tuple(zip(args.sizes[::2], args.sizes[1::2]))
    print(f"numpy {np.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs\n")
    rows = []
    for B, T in sizes:
        loop_repeats = args.loop_repeats if args.loop_repeats is not None else (1 if B * T >= 2**22 else min(3, args.repeats))
        rows.append(bench_size(B, T, args.repeats, loop_repeats, with_torch=not args.no_torch))
    print(format_table(rows))
    for line in check_targets(rows):
        print(line)
    return rows


if __name__ == "__main__":
    main()
