"""Chapter 13 benchmark: the course's GRPO step against Hugging Face TRL's GRPOTrainer.

TRL is a benchmark-only dependency with its own environment (never the course's)::

    bash benchmarks/trl_setup.sh                                      # once: build/trl-venv
    build/trl-venv/bin/python benchmarks/bench_ch13_grpo_vs_trl.py --quick     # smoke run, 2 steps
    build/trl-venv/bin/python benchmarks/bench_ch13_grpo_vs_trl.py             # small model, the course's setting
    build/trl-venv/bin/python benchmarks/bench_ch13_grpo_vs_trl.py --model gpt2-124m   # GPT-2-124M shape, a few steps
    build/trl-venv/bin/python benchmarks/bench_ch13_grpo_vs_trl.py --device cuda       # both on a GPU, if there is one

Models. ``small``: the course's base model (``load_or_pretrain(base_config())``) on the
sums of ``ArithmeticTask`` with its exact-answer verifier as the reward, in the course's
GRPO setting (``grpo_config()``). ``gpt2-124m``: GPT-2 small's shape (12 layers, 12 heads,
C = 768, V = 50257, 1024 positions) with random weights, for speed only: the prompts are
still the character-level sums, and the ids past our 50 characters are filler tokens
that decode to nothing (``trl_bridge.WideCharTokenizer`` and the ``hf_tokenizer`` built
from it), so a random model's completions score 0 in both and the advantages vanish;
every forward and backward pass still runs. Its batch is 4 prompts x 4 completions x 16
tokens, 3 timed steps.

Configured alike (TRL's defaults differ from the original GRPO, so each is set here):
the same weights (``trl_bridge.to_causal_lm``, saved to a temporary folder because TRL
builds its reference model from a path), tokenizer ids (``trl_bridge.hf_tokenizer``),
prompts in the same order (``shuffle_dataset=False``), reward function, group size
(``num_generations``), ``max_completion_length``, temperature 1 with no top-k / top-p,
``num_iterations`` = our ``epochs``, ``epsilon``, ``beta`` (k3 KL; TRL's default is 0),
``loss_type="grpo"`` (our ``sequence_mean``: mean over each completion's tokens, then
over completions; TRL's default is "dapo"), ``scale_rewards="group"``, learning rate
constant (TRL decays it linearly by default), weight decay 0 (AdamW = our Adam), the
same gradient clipping, fp32 (``bf16=False``: TRL's GRPO defaults to bf16), dropout off,
no vLLM, one optimiser step per batch (``per_device_train_batch_size`` = the whole batch,
``steps_per_generation`` = our ``minibatches``). One difference TRL does not expose:
it divides by the unbiased group std (G - 1), ours by the population one (G), a factor
sqrt(G / (G - 1)) = 1.03 on the advantages at G = 16.

The same arithmetic, done once: our GRPO runs each prompt through the network once per
group, when sampling (``generate(..., num_samples=G)``) and in the reference and policy
passes (``grpo.group_logprobs``), and lets the G completions attend to its keys and
values; TRL repeats every prompt G times in the batch. The log-probs, the loss and the
gradients are the same up to rounding (tests/test_grpo.py compares them with the
written-out rows), so this is a saving in work, not a change to the algorithm; on the
course's sums (8 prompt and 5 completion tokens, G = 16) it skips about two thirds of
the tokens.

A step is one batch: sample G completions for each prompt, score, and update
``epochs`` x ``minibatches`` times (that many TRL optimiser steps). Each contender runs
in its own process, so peak RSS is its own; the first step is a warm-up, figures are
medians over the rest; rewards per step are printed side by side.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

import trl_bridge

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # we import trl.experimental on purpose
from course_lib.gpt import GPT, GPTConfig
from course_lib.grpo import GRPOConfig, frozen_copy, grpo_config, grpo_step, verifier_reward_fn
from course_lib.pretrain import base_config, load_or_pretrain, make_tasks
from course_lib.tasks import ArithmeticTask
from course_lib.tokenizer import CharTokenizer

SCRIPT = "benchmarks/bench_ch13_grpo_vs_trl.py"
GPT2_124M = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)


def bench_config(model: str, quick: bool, steps: int | None) -> GRPOConfig:
    if quick:
        config = replace(grpo_config(fast=True), steps=2, prompts_per_step=4, group_size=4)
    elif model == "gpt2-124m":
        config = replace(grpo_config(fast=False), steps=3, prompts_per_step=4, group_size=4, max_new_tokens=16)
    else:
        config = replace(grpo_config(fast=False), steps=30)
    return replace(config, steps=steps) if steps is not None else config


def setup(model: str, quick: bool, seed: int) -> tuple[GPT, CharTokenizer, ArithmeticTask]:
    """(starting policy, our tokenizer, the task) for a model name."""
    if model == "gpt2-124m":
        torch.manual_seed(seed)
        return GPT(GPT2_124M).eval(), trl_bridge.WideCharTokenizer(GPT2_124M.vocab_size), ArithmeticTask(max_digits=3)
    pretrain = base_config(fast=quick)
    base, _ = load_or_pretrain(pretrain, progress=False)
    return base.eval(), CharTokenizer(), make_tasks(pretrain)[0]


def prompt_batches(task: ArithmeticTask, config: GRPOConfig) -> list[list[str]]:
    """steps + 1 batches of distinct-prompt lists (the first is the warm-up), the same for both."""
    rng = np.random.default_rng(config.seed)
    return [task.prompts(config.prompts_per_step, rng, "train") for _ in range(config.steps + 1)]


# ---------------------------------------------------------------- the contenders
def positions_from_mask(forward):
    """``forward`` given position ids that count real tokens when the caller passes none.

    TRL 1.12's GRPO scores completions with ``model(input_ids, attention_mask)`` only, and
    GPT-2 then numbers positions 0..T-1 whatever the mask: on a left-padded row every token
    is read at a position shifted by the row's padding, unlike during sampling (``generate``
    counts real tokens, as ours does everywhere). Harmless for rotary models, not for
    GPT-2's learned absolute positions (the same gap as huggingface/trl#6800 reports for
    Online DPO). ``--trl-position-ids`` closes it, to compare like with like.
    """

    def wrapped(*args, attention_mask=None, position_ids=None, **kwargs):
        if position_ids is None and attention_mask is not None:
            position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return forward(*args, attention_mask=attention_mask, position_ids=position_ids, **kwargs)

    return wrapped


def run_ours(args, config: GRPOConfig) -> dict:
    base, tokenizer, task = setup(args.model, args.quick, config.seed)
    policy = copy.deepcopy(base).to(args.device)
    reference = frozen_copy(base).to(args.device) if config.beta > 0 else None
    del base
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr, fused=True)  # TRL's default is fused AdamW
    generator = torch.Generator(args.device).manual_seed(config.seed)
    reward = verifier_reward_fn(task)
    torch.manual_seed(config.seed)
    rss_before = trl_bridge.rss_mb()
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    times, cpu, rewards, kls = [], [], [], []
    for prompts in prompt_batches(task, config):
        start, cpu_start = time.perf_counter(), time.process_time()
        _, stats = grpo_step(policy, reference, optimizer, reward, prompts, config, tokenizer, generator)
        sync()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
        rewards.append(stats["reward"])
        kls.append(stats["kl"])
    return {"seconds": times, "cpu_seconds": cpu, "reward": rewards, "kl": kls, "rss_before_mb": rss_before,
            "parameters": policy.num_parameters()}


def run_trl(args, config: GRPOConfig) -> dict:
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig as TRLGRPOConfig
    from trl import GRPOTrainer

    base, tokenizer, task = setup(args.model, args.quick, config.seed)
    hf_tok = trl_bridge.hf_tokenizer(tokenizer)
    batches = prompt_batches(task, config)
    dataset = Dataset.from_dict({"prompt": [p for batch in batches for p in batch]})
    updates_per_step = config.epochs * config.minibatches
    B = config.prompts_per_step * config.group_size

    def arithmetic_reward(prompts, completions, **kwargs):
        return [float(r) for r in task.reward(prompts, completions)]

    class Recorder(TrainerCallback):
        def __init__(self):
            self.marks, self.cpu_marks, self.logs = [], [], []

        def on_train_begin(self, args, state, control, **kwargs):
            self.marks.append(time.perf_counter())
            self.cpu_marks.append(time.process_time())

        def on_step_end(self, args, state, control, **kwargs):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append(time.perf_counter())
            self.cpu_marks.append(time.process_time())

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(dict(logs or {}))

    with tempfile.TemporaryDirectory() as out:
        weights = Path(out) / "policy"
        trl_bridge.to_causal_lm(base, tokenizer).save_pretrained(weights)
        hf_tok.save_pretrained(weights)
        parameters = base.num_parameters()
        del base
        trl_args = TRLGRPOConfig(
            output_dir=str(Path(out) / "run"), report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True,
            use_cpu=not args.device.startswith("cuda"), bf16=False, fp16=False, seed=config.seed,
            dataloader_num_workers=0, model_init_kwargs={"dtype": torch.float32},
            per_device_train_batch_size=B // config.minibatches, gradient_accumulation_steps=1,
            steps_per_generation=config.minibatches, num_generations=config.group_size,
            num_iterations=config.epochs, max_steps=len(batches) * updates_per_step, shuffle_dataset=False,
            max_completion_length=config.max_new_tokens, temperature=config.temperature, top_p=1.0, top_k=0,
            epsilon=config.eps, beta=config.beta, loss_type="grpo", scale_rewards="group" if config.scale_rewards else "none",
            learning_rate=config.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
            adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=config.grad_clip,
            use_vllm=False, disable_dropout=True, mask_truncated_completions=False, log_completions=False,
        )
        recorder = Recorder()
        trainer = GRPOTrainer(model=str(weights), reward_funcs=arithmetic_reward, args=trl_args,
                              train_dataset=dataset, processing_class=hf_tok, callbacks=[recorder])
        if args.trl_position_ids:
            for model in (trainer.model, trainer.ref_model):
                if model is not None:
                    model.forward = positions_from_mask(model.forward)
        rss_before = trl_bridge.rss_mb()
        trainer.remove_callback(PrinterCallback)  # the per-step metrics are printed side by side at the end
        trainer.train()
    def per_batch(marks):  # TRL takes epochs x minibatches optimiser steps per batch of groups
        steps = np.diff(marks)
        return [float(steps[i : i + updates_per_step].sum()) for i in range(0, len(steps), updates_per_step)]

    seconds, cpu = per_batch(recorder.marks), per_batch(recorder.cpu_marks)
    logs = [log for log in recorder.logs if "reward" in log][::updates_per_step]
    return {"seconds": seconds, "cpu_seconds": cpu, "reward": [log["reward"] for log in logs], "kl": [log.get("kl", float("nan")) for log in logs],
            "rss_before_mb": rss_before, "parameters": parameters}


# ---------------------------------------------------------------- the report
def summarise(result: dict) -> dict:
    """Medians over the steps after the warm-up (the first), peak memory, and the mean reward of the last 5 steps."""
    return trl_bridge.step_medians(result) | {"reward_last_5": float(np.mean(result["reward"][-5:])),
                                              "peak_cuda_mb": result.get("peak_cuda_mb")}


def format_report(args, config: GRPOConfig, ours: dict, theirs: dict) -> str:
    a, b = summarise(ours), summarise(theirs)
    cuda = args.device.startswith("cuda")
    def row(name, s):
        return (f"{name:<6}{s['median_s']:>10.3f}{s['median_cpu_s']:>12.3f}{s['peak_rss_mb']:>14.0f}{s['rss_before_mb']:>14.0f}"
                + (f"{s['peak_cuda_mb']:>15.0f}" if cuda else "") + f"{s['reward_last_5']:>16.3f}")
    lines = [
        f"GRPO step on {args.device}, model {args.model} ({ours['parameters'] / 1e6:.2f}M weights), median of "
        f"{max(1, len(ours['seconds']) - 1)} steps after one warm-up; {config.prompts_per_step} prompts x G={config.group_size} "
        f"x {config.max_new_tokens} new tokens, {config.epochs} epoch(s) x {config.minibatches} minibatch(es), beta={config.beta}, "
        f"{ours['threads']} torch threads",
        f"{'':<6}{'s / step':>10}{'CPU s/step':>12}{'peak RSS MiB':>14}{'RSS at start':>14}"
        + (f"{'peak CUDA MiB':>15}" if cuda else "") + f"{'reward, last 5':>16}",
        row("ours", a), row("TRL", b), trl_bridge.speedup_line(a, b), "",
    ]
    return "\n".join(lines + trl_bridge.per_step_table(ours, theirs, ".3f", ".4f", kl_width=9))


def worker(args) -> None:
    torch.set_num_threads(args.threads)
    config = bench_config(args.model, args.quick, args.steps)
    result = (run_ours if args.worker == "ours" else run_trl)(args, config)
    result |= {"peak_rss_mb": trl_bridge.peak_rss_mb(), "threads": torch.get_num_threads()}
    if args.device.startswith("cuda"):
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    Path(args.json).write_text(json.dumps(result))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["small", "gpt2-124m"], default="small", help="the course's base model, or GPT-2 124M's shape")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run: FAST base model, 4 prompts x 4, 2 steps")
    parser.add_argument("--steps", type=int, default=None, help="timed GRPO steps (default 30; 3 for gpt2-124m)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="torch threads in both (default 2)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--trl-position-ids", action="store_true",
                        help="give TRL's scoring passes mask-based position ids (see positions_from_mask)")
    parser.add_argument("--worker", choices=["ours", "trl"], help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--out", help="also write both results as JSON here")
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error("--steps must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no GPU")
    trl_bridge.require_trl(SCRIPT)
    if args.worker:
        worker(args)
        return {}
    config = bench_config(args.model, args.quick, args.steps)
    print(trl_bridge.versions(), f"| {args.threads} torch threads in each contender")
    print(f"config: {asdict(config)}" + ("; TRL given mask-based position ids" if args.trl_position_ids else "; stock TRL"))
    if args.model == "small":
        setup(args.model, args.quick, config.seed)  # train and cache the base model once, before the contenders start
    passthrough = [f"--model={args.model}", f"--threads={args.threads}", f"--device={args.device}"]
    passthrough += ["--trl-position-ids"] if args.trl_position_ids else []
    passthrough += (["--quick"] if args.quick else []) + ([f"--steps={args.steps}"] if args.steps else [])
    results = {}
    for name in ("ours", "trl"):
        print(f"running {name} ...", flush=True)
        results[name] = trl_bridge.run_worker(SCRIPT, [f"--worker={name}", *passthrough])
    print(format_report(args, config, results["ours"], results["trl"]))
    if args.out:
        Path(args.out).write_text(json.dumps({"config": asdict(config), **results}, indent=1))
    return results


if __name__ == "__main__":
    main()
