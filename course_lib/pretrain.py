"""Pretraining the course's base model, and a disk cache so that it happens once.

The base model is a small GPT-2 trained by next-token prediction on a mixed
corpus of the two tasks in ``course_lib.tasks``: sums ("47+385=432") and short
reviews ("the soup was great and warm."). It learns both formats, gets many
sums right and many wrong, and writes reviews as positive as they are
negative: a policy with room to improve, which is what chapters 11-14 do
with RL. The full base reads a careless corpus (most sums forget their
carries) until it knows both ways of adding; the fast one is a smaller
model stopped early on clean sums.

``load_or_pretrain(config)`` returns the model for a ``PretrainConfig``: from
the cache when a checkpoint with the same config (seed included) is there,
else by training it and saving it. The cache folder is ``$RL_COURSE_CACHE``
when that environment variable is set, else ``~/.cache/rl-course``.
``base_config()`` is the course's default (a smaller budget in fast mode).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .config import FAST
from .gpt import GPT, GPTConfig, generate
from .tasks import ArithmeticTask, ReviewTask
from .tokenizer import CharTokenizer

__all__ = [
    "PretrainConfig",
    "base_config",
    "make_tasks",
    "model_config",
    "batch_from_documents",
    "lm_loss",
    "lr_at",
    "pretrain",
    "greedy_accuracy",
    "review_quality",
    "cache_dir",
    "cache_key",
    "cache_lock",
    "cached_checkpoint",
    "load_or_pretrain",
    "CACHE_ENV",
]

CACHE_ENV = "RL_COURSE_CACHE"
VALIDATION_SEED = 99
# Part of every cache key: bump it when the tasks, the tokenizer or the
# training code change what a config produces, so stale checkpoints are not reused.
DATA_VERSION = 1


@dataclass(frozen=True)
class PretrainConfig:
    """One pretraining run. Every field is part of the checkpoint's cache key."""

    n_layer: int = 4  # transformer blocks
    n_head: int = 4  # attention heads per block
    n_embd: int = 128  # width of the residual stream
    block_size: int = 48  # longest prompt + completion, in characters (with <bos> and <eos>)
    max_digits: int = 3  # operands of the sums have 1..max_digits digits
    arithmetic_weight: float = 0.85  # share of sums in each batch; the rest are reviews
    carry_slip: float = 0.6  # share of corpus sums written with every carry forgotten ("57+68=15")
    steps: int = 7000  # most optimiser steps (the cosine schedule spans them); each sees batch_size fresh documents
    batch_size: int = 64  # documents per step
    lr: float = 3e-3  # peak learning rate of AdamW
    warmup_steps: int = 200  # linear warm-up from 0 to lr
    min_lr_ratio: float = 0.1  # the cosine decay ends at lr * min_lr_ratio
    weight_decay: float = 0.1  # AdamW's decoupled weight decay on matrices (not on biases, norms)
    grad_clip: float = 1.0  # clip the gradient's global norm to this
    target_accuracy: float | None = None  # stop at the first check where greedy accuracy on validation sums reaches this (None: never)
    eval_every: int = 250  # steps between those checks
    n_validation: int = 200  # validation prompts per check (train-split sums; the held-out ones stay unseen)
    seed: int = 0  # seeds the weights and the corpus

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1; got {self.steps} and {self.batch_size}")
        if not 0.0 <= self.arithmetic_weight <= 1.0:
            raise ValueError(f"arithmetic_weight must lie in [0, 1]; got {self.arithmetic_weight}")
        if not 0.0 <= self.carry_slip <= 1.0:
            raise ValueError(f"carry_slip must lie in [0, 1]; got {self.carry_slip}")


def base_config(fast: bool | None = None) -> PretrainConfig:
    """The course's base model: the full budget, or a small one in fast mode (``COURSE_FAST=1``)."""
    fast = FAST if fast is None else fast
    if fast:  # a smaller model on shorter, clean sums, stopped early: it learns the formats and some sums in seconds
        return PretrainConfig(n_layer=2, n_embd=64, max_digits=2, steps=400, batch_size=32, lr=5e-3, arithmetic_weight=0.6,
                              carry_slip=0.0, warmup_steps=100, target_accuracy=0.35, eval_every=100, n_validation=100)
    return PretrainConfig()


def make_tasks(config: PretrainConfig) -> tuple[ArithmeticTask, ReviewTask]:
    return ArithmeticTask(max_digits=config.max_digits, carry_slip=config.carry_slip), ReviewTask()


def model_config(config: PretrainConfig, tokenizer: CharTokenizer) -> GPTConfig:
    return GPTConfig(vocab_size=tokenizer.vocab_size, block_size=config.block_size,
                     n_layer=config.n_layer, n_head=config.n_head, n_embd=config.n_embd)


def batch_from_documents(documents, tokenizer: CharTokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """<bos> document <eos> for each document, right-padded: ids (B, T) and mask (B, T)."""
    rows = [tokenizer.encode(d, bos=True, eos=True) for d in documents]
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), tokenizer.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, : len(r)] = torch.tensor(r)
        mask[b, : len(r)] = 1
    return ids, mask


def lm_loss(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over real targets: logits (B, T-1, V) score ids[:, 1:].

    loss = -(1/N) sum_{b, t >= 1, mask[b, t] = 1} log softmax(logits[b, t - 1])[ids[b, t]].
    """
    targets, weights = ids[:, 1:], mask[:, 1:].float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (nll * weights.reshape(-1)).sum() / weights.sum()


def lr_at(step: int, config: PretrainConfig) -> float:
    """Linear warm-up to ``lr``, then a cosine decay to ``lr * min_lr_ratio`` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


def pretrain(config: PretrainConfig, progress: bool = True) -> tuple[GPT, dict]:
    """Train a fresh GPT on the mixed corpus; return it (in eval mode) and the history.

    history: ``loss`` (one value per step), ``seconds`` (wall), ``cpu_seconds``
    (this process's CPU time, which a loaded machine does not inflate).
    """
    from tqdm.auto import tqdm

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    tokenizer = CharTokenizer()
    arithmetic, reviews = make_tasks(config)
    n_sums = round(config.batch_size * config.arithmetic_weight)
    model = GPT(model_config(config, tokenizer))
    # Decay the matrices only: shrinking biases, LayerNorm gains or positions helps nothing.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, 0.99),
    )
    history = {"loss": [], "validation": []}
    start, cpu_start = time.perf_counter(), time.process_time()
    model.train()
    bar = tqdm(range(config.steps), desc="pretraining", disable=not progress, mininterval=1.0)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, config)
        # Sums are short and reviews long: one padded batch of each wastes far
        # less compute on padding than one batch of both.
        loss = torch.zeros(())
        for task, n, weight in ((arithmetic, n_sums, config.arithmetic_weight),
                                (reviews, config.batch_size - n_sums, 1.0 - config.arithmetic_weight)):
            if n == 0:
                continue
            ids, mask = batch_from_documents(task.corpus(n, rng), tokenizer)
            logits = model(ids[:, :-1])  # right padding only: plain causal attention is exact
            loss = loss + weight * lm_loss(logits, ids, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        optimizer.step()
        history["loss"].append(loss.item())
        if step % 50 == 0 or step == config.steps - 1:
            bar.set_postfix(loss=f"{np.mean(history['loss'][-50:]):.3f}")
        if (step + 1) % config.eval_every == 0:
            # With a target, stop while the model is still clearly imperfect: RL needs the
            # headroom. The validation sums are a fixed set from the train split: the
            # held-out pairs decide nothing.
            accuracy = greedy_accuracy(model, arithmetic, n=config.n_validation, seed=VALIDATION_SEED, split="train")
            history["validation"].append((step + 1, accuracy))
            model.train()
            if config.target_accuracy is not None and accuracy >= config.target_accuracy:
                break
    history["seconds"] = time.perf_counter() - start
    history["cpu_seconds"] = time.process_time() - cpu_start
    return model.eval(), history


@torch.no_grad()
def greedy_accuracy(model: GPT, task: ArithmeticTask, n: int = 500, seed: int = 1234, split: str = "test",
                    tokenizer: CharTokenizer | None = None, batch_size: int = 250) -> float:
    """Share of ``n`` prompts from ``split`` (drawn with ``seed``) that greedy decoding answers exactly."""
    tokenizer = tokenizer or CharTokenizer()
    prompts = task.prompts(n, np.random.default_rng(seed), split)
    max_new = task.max_digits + 2  # the longest sum and <eos>
    correct = 0.0
    for i in range(0, n, batch_size):
        chunk = prompts[i : i + batch_size]
        completions, mask = generate(model, [tokenizer.encode(p) for p in chunk], max_new,
                                     temperature=0.0, eos_id=tokenizer.eos_id)
        correct += task.reward(chunk, tokenizer.decode_batch(completions, mask)).sum()
    return correct / n


@torch.no_grad()
def review_quality(model: GPT, task: ReviewTask, n: int = 200, seed: int = 1234,
                   tokenizer: CharTokenizer | None = None) -> tuple[float, float]:
    """Sample one review (temperature 1) for ``n`` held-out prompts: (share well-formed, mean labeler score of those)."""
    tokenizer = tokenizer or CharTokenizer()
    prompts = task.prompts(n, np.random.default_rng(seed), "test")
    ids = [tokenizer.encode(p) for p in prompts]
    completions, mask = generate(model, ids, model.config.block_size - max(map(len, ids)), temperature=1.0,
                                 eos_id=tokenizer.eos_id, generator=torch.Generator().manual_seed(seed))
    scores = task.reward(prompts, tokenizer.decode_batch(completions, mask))
    well_formed = scores > task.malformed_score
    return float(well_formed.mean()), float(scores[well_formed].mean()) if well_formed.any() else float("nan")


# ---------------------------------------------------------------- the cache
def cache_dir() -> Path:
    """``$RL_COURSE_CACHE`` if set, else ``~/.cache/rl-course``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "rl-course")


@contextlib.contextmanager
def cache_lock(path):
    """Hold an exclusive lock on the file ``path`` for the duration of the block.

    Two processes that need the same missing checkpoint would otherwise both train
    it; with the lock the second waits and then loads the first one's file. Where
    ``fcntl`` does not exist (Windows) the block runs unlocked: writes are still
    atomic renames, so the worst case is training twice.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_checkpoint(folder, stem: str, make_model: Callable[[dict], GPT],
                      train: Callable[[], tuple[GPT, dict]]) -> tuple[GPT, dict]:
    """The model saved as ``<folder>/<stem>.safetensors`` (record in ``<stem>.json``), or ``train()`` it and save it.

    ``make_model(record)`` builds the empty model a saved checkpoint loads into;
    ``train()`` returns a trained model and its record (JSON-serialisable). The
    returned record has ``cached`` added. Training happens under ``cache_lock``,
    so a second process that needs the same checkpoint waits and then loads it.
    The output layer is tied to wte, so the tensor is stored once; files are
    written under temporary names and renamed, so a run killed halfway never
    leaves half a checkpoint.
    """
    from safetensors.torch import load_file, save_file

    folder = Path(folder)
    weights_path, record_path = folder / f"{stem}.safetensors", folder / f"{stem}.json"

    def load():
        record = json.loads(record_path.read_text())
        model = make_model(record)
        state = load_file(weights_path)
        state["lm_head.weight"] = state["transformer.wte.weight"]
        model.load_state_dict(state)
        return model.eval(), record | {"cached": True}

    if weights_path.exists() and record_path.exists():
        return load()
    with cache_lock(folder / f"{stem}.lock"):
        # Another process (a second notebook, a parallel test worker) may have trained
        # it while this one waited for the lock: then load its checkpoint.
        if weights_path.exists() and record_path.exists():
            return load()
        model, record = train()
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.contiguous() for k, v in model.state_dict().items() if k != "lm_head.weight"}
        tmp_weights = weights_path.with_name(f"{weights_path.name}.{os.getpid()}.tmp")
        tmp_record = record_path.with_name(f"{record_path.name}.{os.getpid()}.tmp")
        save_file(state, tmp_weights)
        tmp_record.write_text(json.dumps(record))
        os.replace(tmp_weights, weights_path)
        os.replace(tmp_record, record_path)
        return model, record | {"cached": False}


def cache_key(config: PretrainConfig) -> str:
    """A short hash of every config field (seed included) and DATA_VERSION."""
    payload = json.dumps({"config": asdict(config), "data_version": DATA_VERSION}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def load_or_pretrain(config: PretrainConfig | None = None, directory=None, progress: bool = True) -> tuple[GPT, dict]:
    """The base model for ``config`` (default ``base_config()``): cached, or trained now and cached.

    Returns the model in eval mode and its record: the config, the loss curve,
    training times, held-out greedy accuracy on the sums, and ``cached``
    (True when it came from disk). The checkpoint is
    ``<directory>/base-<cache_key>.safetensors`` with a ``.json`` beside it.
    """
    config = config or base_config()
    folder = Path(directory) if directory is not None else cache_dir()
    tokenizer = CharTokenizer()
    return cached_checkpoint(folder, f"base-{cache_key(config)}", lambda record: GPT(model_config(config, tokenizer)),
                             lambda: _pretrain_with_record(config, tokenizer, progress))


def _pretrain_with_record(config: PretrainConfig, tokenizer: CharTokenizer, progress: bool) -> tuple[GPT, dict]:
    """Pretrain, then measure what the checkpoint's record reports."""
    model, history = pretrain(config, progress=progress)
    arithmetic, reviews = make_tasks(config)
    well_formed, mean_score = review_quality(model, reviews, tokenizer=tokenizer)
    record = {
        "config": asdict(config),
        "data_version": DATA_VERSION,
        "loss": history["loss"],
        "validation": history["validation"],
        "seconds": history["seconds"],
        "cpu_seconds": history["cpu_seconds"],
        "torch_threads": torch.get_num_threads(),
        "heldout_accuracy": greedy_accuracy(model, arithmetic, tokenizer=tokenizer),
        "review_well_formed": well_formed,
        "review_mean_score": mean_score,
    }
    return model, record


def _describe(config: PretrainConfig) -> str:
    return ", ".join(f"{k}={v}" for k, v in asdict(config).items())


if __name__ == "__main__":
    # python -m course_lib.pretrain [--fast] [--steps N]: train (or load) and report.
    import argparse

    parser = argparse.ArgumentParser(description="pretrain (or load from the cache) the course's base model")
    parser.add_argument("--fast", action="store_true", help="the fast-mode budget")
    parser.add_argument("--steps", type=int, default=None, help="override the number of steps")
    parser.add_argument("--seed", type=int, default=None, help="override the seed")
    parser.add_argument("--no-cache", action="store_true", help="train even when a checkpoint exists (into a temporary folder)")
    args = parser.parse_args()
    cfg = base_config(args.fast)
    if args.steps is not None:
        cfg = replace(cfg, steps=args.steps)
    if args.seed is not None:
        cfg = replace(cfg, seed=args.seed)
    print(_describe(cfg))
    if args.no_cache:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            _, rec = load_or_pretrain(cfg, directory=tmp)
    else:
        _, rec = load_or_pretrain(cfg)
    print("validation accuracy by step:", ", ".join(f"{step}: {acc:.0%}" for step, acc in rec["validation"]))
    print(f"cached={rec['cached']}  wall {rec['seconds']:.1f} s  cpu {rec['cpu_seconds']:.1f} s  threads {rec['torch_threads']}  "
          f"final loss {np.mean(rec['loss'][-50:]):.3f}  held-out greedy accuracy {rec['heldout_accuracy']:.1%}  "
          f"reviews well-formed {rec['review_well_formed']:.0%}, mean score {rec['review_mean_score']:+.2f}")
