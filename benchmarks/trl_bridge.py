"""The course's models and tokenizer in the shapes Hugging Face TRL expects, with the same numbers.

Used by the TRL side-by-side benchmarks (``bench_ch12_ppo_vs_trl.py``,
``bench_ch13_grpo_vs_trl.py``) and tested in the course environment by
``tests/test_trl_bridge.py``. Needs ``transformers`` and ``tokenizers``
(both in the course's test extra), never TRL itself: the benchmarks import
TRL, this module does not.

* ``to_causal_lm(model)``: our ``GPT`` as a ``transformers.GPT2LMHeadModel``
  with the same weights (same names, same (in, out) Conv1D layout; the
  output layer tied to ``wte`` as in ours), dropout off.
* ``to_score_model(model)``: a ``GPT(..., value_head=True)`` (the reward
  model of chapter 11, or the critic of chapter 12) as the
  sequence-classification-style model that ``trl.experimental.ppo`` reads:
  ``get_reward`` runs ``getattr(model, model.base_model_prefix)`` (the GPT-2
  trunk) with ``output_hidden_states=True`` and applies ``model.score`` to
  the last hidden state (after ``ln_f``), at every position. Our value head
  is ``nn.Linear(C, 1)`` *with* a bias, and ``GPT2ForSequenceClassification``'s
  ``score`` has none, so ``score`` is replaced by a biased ``nn.Linear``
  holding the value head's weight and bias: the numbers are exactly ours.
* ``hf_tokenizer(tokenizer)``: a ``PreTrainedTokenizerFast`` giving the ids of
  our ``CharTokenizer`` (one id per character, ``<bos>`` in front, pad / bos
  / eos ids 0 / 1 / 2), built offline from its alphabet with a ``tokenizers``
  WordLevel model; prompts are padded on the left, as ours are.
* ``WideCharTokenizer``: our tokenizer for a model whose vocabulary is wider
  than the alphabet (the GPT-2-124M-shaped model, V = 50257, random
  weights): ids past the alphabet are filler tokens that decode to nothing,
  in both ``WideCharTokenizer.decode`` and the ``hf_tokenizer`` built from it.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from course_lib.gpt import GPT
from course_lib.tokenizer import CharTokenizer

__all__ = ["to_causal_lm", "to_score_model", "hf_tokenizer", "WideCharTokenizer", "hf_config", "step_medians",
           "speedup_line", "per_step_table"]


def hf_config(model: GPT, tokenizer: CharTokenizer | None = None, **extra):
    """A ``transformers.GPT2Config`` of the same shape as ``model``, every dropout 0, our special ids."""
    import transformers

    tokenizer = tokenizer or CharTokenizer()
    c = model.config
    return transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        layer_norm_epsilon=c.layer_norm_epsilon, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
        bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id, pad_token_id=tokenizer.pad_id,
        tie_word_embeddings=True, **extra,
    )


def _trunk_state(model: GPT) -> dict:
    """Our weights under GPT-2's names, without the value head (the names are the same already)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("value_head.")}


def _check_load(missing, unexpected, allowed_missing=()) -> None:
    # Causal-mask buffers are not weights; anything else missing or left over means the layouts differ.
    bad = [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias")) and k not in allowed_missing]
    if unexpected or bad:
        raise RuntimeError(f"weights do not line up: missing {bad}, unexpected {list(unexpected)}")


def to_causal_lm(model: GPT, tokenizer: CharTokenizer | None = None):
    """A ``GPT2LMHeadModel`` (eval mode, fp32, dropout 0) holding a copy of ``model``'s weights."""
    import transformers

    tokenizer = tokenizer or CharTokenizer()
    hf = transformers.GPT2LMHeadModel(hf_config(model, tokenizer))
    state = _trunk_state(model)
    missing, unexpected = hf.load_state_dict(state, strict=False)
    _check_load(missing, unexpected)
    hf.tie_weights()
    if hf.lm_head.weight.data_ptr() != hf.transformer.wte.weight.data_ptr():
        raise RuntimeError("the output layer is not tied to wte; ours is")
    hf.generation_config.pad_token_id = tokenizer.pad_id
    hf.generation_config.eos_token_id = tokenizer.eos_id
    hf.generation_config.bos_token_id = tokenizer.bos_id
    return hf.float().eval()


def to_score_model(model: GPT, tokenizer: CharTokenizer | None = None):
    """A ``GPT2ForSequenceClassification`` (one label) whose ``score`` is our value head, bias included.

    TRL's PPO reads it position by position: ``model.score(trunk(...).hidden_states[-1])``
    is our ``model.values(...)`` (B, T, 1), so the reward at the last real token is our
    ``last_token_scores`` and the critic's values are our critic's.
    """
    import transformers

    if getattr(model, "value_head", None) is None:
        raise ValueError("model must have a value head: GPT(config, value_head=True) or with_value_head(base)")
    tokenizer = tokenizer or CharTokenizer()
    hf = transformers.GPT2ForSequenceClassification(hf_config(model, tokenizer, num_labels=1))
    trunk = {k.removeprefix("transformer."): v for k, v in _trunk_state(model).items() if k.startswith("transformer.")}
    missing, unexpected = hf.transformer.load_state_dict(trunk, strict=False)
    _check_load(missing, unexpected)
    score = nn.Linear(model.config.n_embd, 1, bias=True)
    with torch.no_grad():
        score.weight.copy_(model.value_head.weight)
        score.bias.copy_(model.value_head.bias)
    hf.score = score
    return hf.float().eval()


class WideCharTokenizer(CharTokenizer):
    """``CharTokenizer`` for a model with ``vocab_size`` ids, more than the alphabet's.

    Ids from ``CharTokenizer().vocab_size`` up are fillers: a model with random weights
    samples them, and they decode to nothing (as pad and bos do). Encoding is unchanged.
    """

    def __init__(self, vocab_size: int, alphabet: str | None = None):
        super().__init__(alphabet) if alphabet is not None else super().__init__()
        self.n_chars = len(self._chars)
        if vocab_size < self.n_chars:
            raise ValueError(f"vocab_size must be >= {self.n_chars} (the characters); got {vocab_size}")
        self._vocab_size = vocab_size

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def decode(self, ids, stop_at_eos: bool = True) -> str:
        ids = ids.tolist() if isinstance(ids, torch.Tensor) else [int(i) for i in ids]
        if any(not 0 <= i < self.vocab_size for i in ids):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size})")
        return super().decode([i for i in ids if i < self.n_chars], stop_at_eos)


def hf_tokenizer(tokenizer: CharTokenizer | None = None):
    """A ``PreTrainedTokenizerFast`` that gives exactly our ids, built offline.

    Every character is its own word (a regex pre-tokenizer splits them apart), looked
    up in a WordLevel vocabulary of our ids; ``<bos>`` is prepended as a special token
    (``add_special_tokens``, the default, so TRL's ``processing_class(text=prompts)``
    gets it too); decoding joins the characters without spaces and, with
    ``skip_special_tokens=True``, drops pad / bos / eos. A ``WideCharTokenizer``'s
    filler ids become tokens ``<x123>`` that the decoder erases.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    tokenizer = tokenizer or CharTokenizer()
    chars = list(tokenizer.special_tokens) + list(tokenizer.alphabet)
    vocab = {c: i for i, c in enumerate(chars)}
    if len(vocab) != len(chars):
        raise ValueError("tokenizer: special tokens and alphabet must not share a string")
    filler = range(len(chars), tokenizer.vocab_size)
    vocab |= {f"<x{i}>": i for i in filler}
    # WordLevel needs an unknown token; ours raises on unknown characters, so any text the
    # benchmarks feed is in the alphabet and the pad id is never produced by this route.
    backend = Tokenizer(models.WordLevel(vocab, unk_token=tokenizer.special_tokens[tokenizer.pad_id]))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    steps = [decoders.Replace(Regex(r"<x\d+>"), "")] if len(filler) else []
    backend.decoder = decoders.Sequence(steps + [decoders.Fuse()])
    bos = tokenizer.special_tokens[tokenizer.bos_id]
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B",
                                                           special_tokens=[(bos, tokenizer.bos_id)])
    hf = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=tokenizer.special_tokens[tokenizer.pad_id],
        bos_token=bos,
        eos_token=tokenizer.special_tokens[tokenizer.eos_id],
        padding_side="left",
        model_max_length=10**6,
    )
    if (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) != (tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id):
        raise RuntimeError("special token ids differ from the course tokenizer's")
    return hf


# ---------------------------------------------------------------- benchmark plumbing
TRL_VERSION = "1.12.0"
SETUP_HINT = ("run it in the TRL benchmark environment:\n"
              "    bash benchmarks/trl_setup.sh\n"
              "    build/trl-venv/bin/python {script} [--quick]")


def require_trl(script: str) -> str:
    """TRL's version, or exit with a message saying how to set up and run ``script``'s environment."""
    import sys

    try:
        import trl
    except ImportError:
        sys.exit(f"{script}: TRL is not installed in this Python ({sys.executable}); it is a benchmark-only "
                 f"dependency, kept out of the course's environment;\n" + SETUP_HINT.format(script=script))
    if trl.__version__ != TRL_VERSION:
        sys.exit(f"{script}: needs TRL {TRL_VERSION} (the last release with trl.experimental.ppo); found "
                 f"{trl.__version__} in {sys.executable};\n" + SETUP_HINT.format(script=script))
    return trl.__version__


def rss_mb() -> float:
    """This process's resident memory now, in MiB (Linux: /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (ru_maxrss is in KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(script: str, argv: list[str], timeout: float | None = None) -> dict:
    """Run ``script`` in a fresh Python process with ``argv`` plus ``--json <file>``; return the JSON it wrote.

    Each contender gets its own process, so its peak RSS is its own (imports included).
    """
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = f"{tmp}/result.json"
        subprocess.run([sys.executable, script, *argv, "--json", out], check=True, timeout=timeout)
        with open(out) as f:
            return json.load(f)


def versions() -> str:
    import os
    import platform

    import transformers

    try:
        import trl

        trl_version = trl.__version__
    except ImportError:
        trl_version = "not installed"
    return (f"TRL {trl_version}, transformers {transformers.__version__}, torch {torch.__version__}, "
            f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


# ---------------------------------------------------------------- the side-by-side report
def step_medians(result: dict) -> dict:
    """Median wall and CPU seconds per step after the first (a warm-up, unless it is the only one), and the RSS figures.

    result: a contender's record with per-step lists "seconds" and "cpu_seconds", and
    "peak_rss_mb", "rss_before_mb".
    """
    import statistics

    def timed(key):
        return result[key][1:] or result[key]

    return {"median_s": statistics.median(timed("seconds")), "median_cpu_s": statistics.median(timed("cpu_seconds")),
            "peak_rss_mb": result["peak_rss_mb"], "rss_before_mb": result["rss_before_mb"]}


def pool_rounds(runs: list[dict]) -> dict:
    """One contender's record from several runs of it: the first run, with the timed steps of the others appended.

    Each run's first step is a warm-up: later runs add ``seconds[1:]`` and ``cpu_seconds[1:]``
    (``step_medians`` drops the first run's). Rewards, KL and the rest come from the first run
    (the same seed gives the same run); the peak RSS is the largest.
    """
    if not runs:
        raise ValueError("runs must hold at least one run")
    pooled = dict(runs[0])
    for key in ("seconds", "cpu_seconds"):
        pooled[key] = list(runs[0][key]) + [x for run in runs[1:] for x in run[key][1:]]
    pooled["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    return pooled


def speedup_line(ours: dict, theirs: dict) -> str:
    """TRL's median step time over ours (wall and CPU), and our peak RSS over TRL's, from two ``step_medians``."""
    return (f"speed-up TRL / ours: wall {theirs['median_s'] / ours['median_s']:.2f}x, "
            f"CPU {theirs['median_cpu_s'] / ours['median_cpu_s']:.2f}x;   "
            f"peak RSS ours / TRL: {ours['peak_rss_mb'] / theirs['peak_rss_mb']:.2f}")


def per_step_table(ours: dict, theirs: dict, reward_fmt: str, kl_fmt: str, kl_width: int) -> list[str]:
    """One line per step, both contenders side by side: reward, KL and seconds ("-" past a shorter run)."""
    lines = [f"{'step':>4}{'reward ours':>13}{'reward TRL':>12}{'KL ours':>9}{'KL TRL':>{kl_width}}{'s ours':>8}{'s TRL':>8}"]
    for i in range(max(len(ours["reward"]), len(theirs["reward"]))):
        def cell(result, key, fmt):
            return format(result[key][i], fmt) if i < len(result[key]) else "-"
        lines.append(f"{i:>4}{cell(ours, 'reward', reward_fmt):>13}{cell(theirs, 'reward', reward_fmt):>12}"
                     f"{cell(ours, 'kl', kl_fmt):>9}{cell(theirs, 'kl', kl_fmt):>{kl_width}}"
                     f"{cell(ours, 'seconds', '.2f'):>8}{cell(theirs, 'seconds', '.2f'):>8}")
    return lines
