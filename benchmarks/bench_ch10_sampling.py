"""Chapter 10 benchmark: sampling speed of course_lib.gpt.generate.

Run from the repository root::

    python benchmarks/bench_ch10_sampling.py                  # CPU, both models
    python benchmarks/bench_ch10_sampling.py --device cuda    # on a GPU
    python benchmarks/bench_ch10_sampling.py --models small --repeats 9

For each model shape (the course's small base model, and GPT-2 124M's shape
with random weights) it times three ways of producing ``--new-tokens`` tokens
for a batch of ``--batch`` left-padded prompts of different lengths:

* ``generate`` with the KV cache (the default),
* ``generate(use_cache=False)``, which re-runs the whole sequence every step,
* ``transformers``' ``GPT2LMHeadModel.generate`` on the same weights.

All three decode greedily and never stop early (no EOS), so each produces
exactly batch * new_tokens tokens; the script checks that all three produce
the same tokens, so a speed-up can never come from a wrong answer. Figures are
tokens per second, medians over ``--repeats`` timed runs after one warm-up,
the contenders taking turns within each repeat.
transformers is needed only here and in the tests, never by the course.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from course_lib.gpt import GPT, GPTConfig, generate, left_pad
from course_lib.pretrain import base_config, model_config
from course_lib.tokenizer import CharTokenizer

SHAPES = {
    "small": lambda: model_config(base_config(fast=False), CharTokenizer()),
    "gpt2-124m": lambda: GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
}


def to_transformers(model: GPT):
    """A ``transformers.GPT2LMHeadModel`` holding the same weights as ``model``."""
    import transformers

    c = model.config
    hf_config = transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head,
        layer_norm_epsilon=c.layer_norm_epsilon, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    hf = transformers.GPT2LMHeadModel(hf_config)
    # Same names, same (in, out) layout of the Conv1D weights: the state dict loads as it is.
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("value_head.")}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if unexpected or any(not k.endswith((".attn.bias", ".attn.masked_bias")) for k in missing):
        raise RuntimeError(f"weights do not line up: missing {missing}, unexpected {unexpected}")
    return hf.eval()


def interleaved_times(fns: dict, repeats: int, sync) -> tuple[dict, dict]:
    """Median wall time of each function, timed in turn within every repeat after one warm-up call each.

    Interleaving means a burst of load from other processes hits every
    contender, not just whichever happened to run during it.
    """
    results = {name: fn() for name, fn in fns.items()}  # warm-up
    sync()
    times = {name: [] for name in fns}
    for _ in range(max(1, repeats)):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, results


def make_prompts(vocab_size: int, batch: int, seed: int = 0, min_len: int = 4, max_len: int = 12) -> list[list[int]]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_len, max_len + 1, (batch,), generator=gen).tolist()
    # ids from 3 up: 0-2 are pad / bos / eos in the course's tokenizer
    return [torch.randint(3, vocab_size, (n,), generator=gen).tolist() for n in lengths]


def bench_model(name: str, config: GPTConfig, batch: int, new_tokens: int, repeats: int, device: str,
                skip_no_cache: bool = False, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = GPT(config).to(device).eval()
    hf = to_transformers(model.cpu()).to(device)
    model = model.to(device)
    prompts = make_prompts(config.vocab_size, batch, seed)
    ids, mask = left_pad(prompts, pad_id=0, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    n_tokens = batch * new_tokens

    def ours(use_cache):
        return generate(model, ids, new_tokens, temperature=0.0, attention_mask=mask, use_cache=use_cache)[0]

    @torch.inference_mode()
    def theirs():
        out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                          do_sample=False, pad_token_id=0, eos_token_id=None, use_cache=True)
        return out[:, ids.shape[1]:]

    row = {"model": name, "parameters": model.num_parameters(), "batch": batch, "new_tokens": new_tokens}
    contenders = {"cache": lambda: ours(True), "hf": theirs}
    if not skip_no_cache:
        contenders["no_cache"] = lambda: ours(False)
    seconds, tokens = interleaved_times(contenders, repeats, sync)
    for key, t in seconds.items():
        row[f"{key}_s"], row[f"{key}_tok_s"] = t, n_tokens / t
    row["same_tokens_as_hf"] = bool(torch.equal(tokens["cache"].cpu(), tokens["hf"].cpu()))
    if not skip_no_cache:
        row["same_tokens_without_cache"] = bool(torch.equal(tokens["cache"], tokens["no_cache"]))
    return row


def format_table(rows: list[dict], device: str, repeats: int) -> str:
    lines = [f"greedy generation, tokens per second (higher is better), device {device}, median of {repeats}",
             f"{'model':<11}{'weights':>12}{'B x new':>9}{'ours, cache':>14}{'ours, no cache':>16}"
             f"{'transformers':>14}{'cache / hf':>12}{'cache / none':>14}  same tokens"]
    for r in rows:
        no_cache = f"{r['no_cache_tok_s']:>16.0f}" if "no_cache_tok_s" in r else f"{'skipped':>16}"
        ratio_nc = f"{r['cache_tok_s'] / r['no_cache_tok_s']:>13.1f}x" if "no_cache_tok_s" in r else f"{'':>14}"
        same = "yes" if r["same_tokens_as_hf"] and r.get("same_tokens_without_cache", True) else "NO"
        lines.append(
            f"{r['model']:<11}{r['parameters'] / 1e6:>11.2f}M{str(r['batch']) + 'x' + str(r['new_tokens']):>9}"
            f"{r['cache_tok_s']:>14.0f}{no_cache}{r['hf_tok_s']:>14.0f}{r['cache_tok_s'] / r['hf_tok_s']:>11.1f}x{ratio_nc}  {same}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--models", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="model shapes to time")
    parser.add_argument("--batch", type=int, default=16, help="prompts per batch")
    parser.add_argument("--new-tokens", type=int, default=32, help="tokens generated per prompt")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip-no-cache", action="store_true", help="do not time generation without the cache")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch < 1 or args.new_tokens < 1:
        parser.error("--repeats, --batch and --new-tokens must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda asked for, but torch sees no GPU")
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    gpu = f", {torch.cuda.get_device_name()}" if args.device.startswith("cuda") else ""
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}, "
          f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads{gpu}\n")
    rows = []
    for name in args.models:
        rows.append(bench_model(name, SHAPES[name](), args.batch, args.new_tokens, args.repeats, args.device, args.skip_no_cache))
    print(format_table(rows, args.device, args.repeats))
    return rows


if __name__ == "__main__":
    main()
