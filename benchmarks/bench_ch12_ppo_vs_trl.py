"""Chapter 12 benchmark: the course's RLHF-PPO step against Hugging Face TRL's PPO trainer.

TRL is a benchmark-only dependency with its own environment (never the course's)::

    bash benchmarks/trl_setup.sh                                    # once: build/trl-venv
    build/trl-venv/bin/python benchmarks/bench_ch12_ppo_vs_trl.py --quick   # smoke run, tiny model, 2 steps
    build/trl-venv/bin/python benchmarks/bench_ch12_ppo_vs_trl.py           # the full setting
    build/trl-venv/bin/python benchmarks/bench_ch12_ppo_vs_trl.py --steps 20 --threads 2
    build/trl-venv/bin/python benchmarks/bench_ch12_ppo_vs_trl.py --steps 12 --rounds 3   # the figures of the notes

TRL 1.12.0 is the last release with a PPO trainer (``trl.experimental.ppo``). Both
contenders get the same start: the course's base model (policy, and the frozen
reference), the chapter 11 reward model (``load_or_train_reward_model``), a critic that
is the base model with a fresh zero value head, the same review prompts, batch size,
completion length, PPO epochs and minibatches, clip ranges, gamma and lambda, fp32,
dropout off, the same torch thread count. ``benchmarks/trl_bridge.py`` converts the
models (``GPT2LMHeadModel``; ``GPT2ForSequenceClassification`` whose ``score`` is our
value head, bias included) and the tokenizer; ``tests/test_trl_bridge.py`` checks that
logits, token ids and reward scores agree.

Where the two trainers differ and TRL cannot be configured like ours, ours is set like
TRL: a fixed KL coefficient (TRL's PPO has no adaptive controller; ``kl_target=None``)
and no gradient clipping (TRL's PPO loop never clips; ``max_grad_norm=inf``). TRL gets
our optimiser: fused Adam (eps 1e-5) with the policy at ``lr`` and the critic at
``critic_lr``, constant learning rate (its default decays linearly to 0). TRL's
``vf_coef`` is 1: its critic loss is then our ``clipped_value_loss`` (both halve the
clipped squared error). Minibatches: ``per_device_train_batch_size = batch``,
``gradient_accumulation_steps = 1``, ``num_mini_batches = minibatches``, so both take
one optimiser step per minibatch.

The same arithmetic, less of it. What TRL computes and ours does not, none of which
changes a number that is used (tests in tests/test_gpt.py and tests/test_reward.py
compare values and gradients with the plain padded pass):

* the padding (``GPT.hidden_states(..., skip_padding=True)``): the LayerNorms,
  projections and MLPs run on the real tokens only, and for the attention each row's real
  tokens are packed from the left, so causal attention needs no mask and the grid is as
  long as the longest row. With prompts of 12 to 15 tokens and completions of about
  15 of the 30 allowed tokens, about a third of the batch is padding;
* the prompt's outputs (``keep_last``): the policy and the critic read their outputs at
  the last prompt token and after it only, so the last block runs its queries, output
  projection and MLP there alone; earlier tokens still give their keys and values. The
  reward model reads one position per text, so its last block runs there alone;
* the finished completions while sampling: rows that have drawn <eos> leave the KV cache
  once a quarter of them have, so the later steps run on the rows still writing;
* the gradient norm, when it clips nothing (``max_grad_norm=inf``, set here to match TRL).

Both take log pi_old from the logits they sampled with (ours: ``generate(...,
return_logprobs=True)``), not from a second pass of the policy.

Each contender runs in its own process (``--worker``), so peak RSS is its own. A step
is one PPO iteration: generate, score, advantages, ``epochs`` x ``minibatches`` updates.
The first step is a warm-up and is not timed; figures are medians over the rest. The
reward per step (mean reward-model score of the batch, before the update) is printed
side by side.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

import trl_bridge

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # we import trl.experimental on purpose
from course_lib.gpt import GPT, GPTConfig, with_value_head
from course_lib.grpo import frozen_copy
from course_lib.pretrain import base_config, cache_dir, load_or_pretrain
from course_lib.reward import load_or_train_reward_model, reward_config, reward_fn
from course_lib.rlhf import RLHFConfig, make_state, ppo_step, rlhf_config
from course_lib.tasks import ReviewTask
from course_lib.tokenizer import CharTokenizer

SCRIPT = "benchmarks/bench_ch12_ppo_vs_trl.py"


def bench_config(quick: bool, steps: int | None) -> tuple[RLHFConfig, bool]:
    """The run's RLHFConfig (course full setting, or a tiny one) set like TRL where TRL cannot be set like ours."""
    if quick:
        config = rlhf_config(fast=True, steps=2, batch_size=8, max_new_tokens=10, epochs=1, minibatches=2)
    else:
        config = rlhf_config(fast=False)
    config = replace(config, kl_target=None, max_grad_norm=math.inf)
    if steps is not None:
        config = replace(config, steps=steps)
    return config, quick  # quick also picks the FAST base and reward models


def models(fast: bool, reward_key: str | None = None):
    """(base model, reward model), both from the course cache (trained there on first use).

    reward_key: load ``reward-<key>.safetensors`` from the cache instead of the current
    ``reward_config``'s model (any chapter 11 reward model of the base model's shape).
    """
    base, _ = load_or_pretrain(base_config(fast), progress=False)
    if reward_key is None:
        reward_model, _ = load_or_train_reward_model(reward_config(fast), base=base_config(fast), progress=False)
    else:
        from safetensors.torch import load_file

        folder = cache_dir()
        record = json.loads((folder / f"reward-{reward_key}.json").read_text())
        reward_model = GPT(GPTConfig(**record["gpt_config"]), value_head=True)
        state = load_file(folder / f"reward-{reward_key}.safetensors")
        state["lm_head.weight"] = state["transformer.wte.weight"]
        reward_model.load_state_dict(state)
    return base.eval(), reward_model.eval()


def prompt_batches(config: RLHFConfig) -> list[list[str]]:
    """steps + 1 batches of review prompts (the first is the warm-up), the same for both."""
    rng = np.random.default_rng(config.seed)
    task = ReviewTask()
    return [task.prompts(config.batch_size, rng, "train") for _ in range(config.steps + 1)]


# ---------------------------------------------------------------- the contenders
def run_ours(config: RLHFConfig, fast: bool, reward_key: str | None = None) -> dict:
    base, reward_model = models(fast, reward_key)
    policy = copy.deepcopy(base)
    reference = frozen_copy(base)
    critic = with_value_head(base)  # the trunk of the base model, a zero value head
    torch.manual_seed(config.seed)
    state = make_state(policy, critic, config)
    score = reward_fn(reward_model)
    batches = prompt_batches(config)
    rss_before = trl_bridge.rss_mb()
    times, cpu, rewards, kls, lengths, real = [], [], [], [], [], []
    for prompts in batches:
        start, cpu_start = time.perf_counter(), time.process_time()
        stats, rollout = ppo_step(policy, reference, critic, score, prompts, state, config)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        rewards.append(stats["reward"])
        kls.append(stats["kl"])
        lengths.append(stats["length"])
        real.append(float(rollout.attention_mask.float().mean()))
    return {"seconds": times, "cpu_seconds": cpu, "reward": rewards, "kl": kls, "rss_before_mb": rss_before,
            "length": lengths, "real_share": real}


def run_trl(config: RLHFConfig, fast: bool, reward_key: str | None = None) -> dict:
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    base, reward_model = models(fast, reward_key)
    tokenizer = trl_bridge.hf_tokenizer(CharTokenizer())
    policy = trl_bridge.to_causal_lm(base)
    reference = trl_bridge.to_causal_lm(base)
    value_model = trl_bridge.to_score_model(with_value_head(base))
    reward = trl_bridge.to_score_model(reward_model)
    batches = prompt_batches(config)
    prompts = [p for batch in batches for p in batch]
    dataset = Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in prompts]})

    class Recorder(TrainerCallback):
        """Wall time at the end of every PPO iteration, and the logged metrics."""

        def __init__(self):
            self.marks, self.cpu_marks, self.logs = [], [], []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())
            self.cpu_marks.append(time.process_time())

        def on_step_end(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())
            self.cpu_marks.append(time.process_time())

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    with tempfile.TemporaryDirectory() as out:
        args = PPOConfig(
            output_dir=out, report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
            use_cpu=True, bf16=False, fp16=False, seed=config.seed, dataloader_num_workers=0,
            per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=1,
            num_mini_batches=config.minibatches, num_ppo_epochs=config.epochs,
            local_rollout_forward_batch_size=config.batch_size,
            total_episodes=config.batch_size * len(batches),
            response_length=config.max_new_tokens, temperature=config.temperature, stop_token="eos",
            missing_eos_penalty=None, kl_coef=config.kl_coef, kl_estimator="k1", whiten_rewards=False,
            cliprange=config.clip_eps, cliprange_value=config.value_clip, vf_coef=1.0,
            gamma=config.gamma, lam=config.lam, num_sample_generations=0,
            learning_rate=config.lr, lr_scheduler_type="constant",
        )
        # Our optimiser: fused Adam with eps 1e-5, the critic at its own learning rate.
        optimizer = torch.optim.Adam([{"params": list(policy.parameters()), "lr": config.lr},
                                      {"params": list(value_model.parameters()), "lr": config.critic_lr}], eps=1e-5, fused=True)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        recorder = Recorder()
        trainer = PPOTrainer(args=args, processing_class=tokenizer, model=policy, ref_model=reference,
                             reward_model=reward, train_dataset=dataset, value_model=value_model,
                             eval_dataset=dataset.select(range(config.batch_size)),
                             optimizers=(optimizer, scheduler), callbacks=[recorder])
        rss_before = trl_bridge.rss_mb()
        trainer.remove_callback(PrinterCallback)  # the per-step metrics are printed side by side at the end
        trainer.train()
    logs = [log for log in recorder.logs if "objective/scores" in log]
    return {"seconds": list(np.diff(recorder.marks)), "cpu_seconds": list(np.diff(recorder.cpu_marks)), "reward": [log["objective/scores"] for log in logs],
            "kl": [log["objective/kl"] for log in logs], "rss_before_mb": rss_before}


# ---------------------------------------------------------------- the report
def summarise(result: dict) -> dict:
    """Medians over the steps after the warm-up (the first), peak memory, and the reward over the second half."""
    return trl_bridge.step_medians(result) | {"reward_2nd_half": float(np.mean(result["reward"][len(result["reward"]) // 2:]))}


def format_report(config: RLHFConfig, ours: dict, theirs: dict) -> str:
    a, b = summarise(ours), summarise(theirs)
    def row(name, s):
        return (f"{name:<6}{s['median_s']:>10.3f}{s['median_cpu_s']:>12.3f}{s['peak_rss_mb']:>14.0f}"
                f"{s['rss_before_mb']:>14.0f}{s['reward_2nd_half']:>+18.3f}")
    lines = [
        f"RLHF-PPO step, median of {max(1, len(ours['seconds']) - 1)} timed steps (after a warm-up in each round); "
        f"B={config.batch_size} prompts x {config.max_new_tokens} new tokens, {config.epochs} epochs x "
        f"{config.minibatches} minibatches, {ours['threads']} torch threads, {ours['parameters'] / 1e6:.2f}M-weight policy",
        f"{'':<6}{'s / step':>10}{'CPU s/step':>12}{'peak RSS MiB':>14}{'RSS at start':>14}{'reward, 2nd half':>18}",
        row("ours", a), row("TRL", b), trl_bridge.speedup_line(a, b),
        # What skipping the padding saves depends on how long the policy's completions are.
        f"our completions: {ours['length'][0]:.1f} -> {ours['length'][-1]:.1f} tokens from the first step to the last; "
        f"real tokens {np.mean(ours['real_share']):.0%} of the padded batch on average", "",
    ]
    return "\n".join(lines + trl_bridge.per_step_table(ours, theirs, "+.3f", ".3f", kl_width=8))


def worker(args) -> None:
    torch.set_num_threads(args.threads)
    config, fast = bench_config(args.quick, args.steps)
    result = (run_ours if args.worker == "ours" else run_trl)(config, fast, args.reward_model)
    result |= {"peak_rss_mb": trl_bridge.peak_rss_mb(), "threads": torch.get_num_threads()}
    result["parameters"] = models(fast, args.reward_model)[0].num_parameters()
    Path(args.json).write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: FAST base model, batch 8, 2 steps")
    parser.add_argument("--steps", type=int, default=None, help="timed PPO steps (default: the course's full setting)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads in both (default 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the contenders this many times, taking turns (ours, TRL, ours, ...), and pool their "
                             "timed steps, so a machine that slows down or speeds up during the run favours neither")
    parser.add_argument("--reward-model", metavar="KEY", help="use the cached reward-KEY.safetensors (default: reward_config()'s model)")
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write both results as JSON here")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    trl_bridge.require_trl(SCRIPT)
    if args.worker:
        worker(args)
        return {}
    config, fast = bench_config(args.quick, args.steps)
    print(trl_bridge.versions(), f"| {args.threads} torch threads in each contender")
    print(f"config: {asdict(config)}")
    models(fast, args.reward_model)  # train and cache the base and reward models once, before the contenders race for them
    passthrough = ([f"--reward-model={args.reward_model}"] if args.reward_model else [])
    passthrough += (["--quick"] if args.quick else []) + ([f"--steps={args.steps}"] if args.steps else []) + [f"--threads={args.threads}"]
    runs = {"ours": [], "trl": []}
    for k in range(args.rounds):
        for name in runs:
            print(f"running {name} (round {k + 1} of {args.rounds}) ...", flush=True)
            runs[name].append(trl_bridge.run_worker(SCRIPT, [f"--worker={name}", *passthrough]))
        if args.rounds > 1:
            print(f"round {k + 1}: " + trl_bridge.speedup_line(*(trl_bridge.step_medians(runs[n][-1]) for n in runs)))
    results = {name: trl_bridge.pool_rounds(r) for name, r in runs.items()}
    print(format_report(config, results["ours"], results["trl"]))
    if args.out:
        Path(args.out).write_text(json.dumps({"config": asdict(config), **results}, indent=1))
    return results


if __name__ == "__main__":
    main()
