"""Checks for exercise 10: log-probabilities of a sequence, and one sampling step.

The references are written independently of ``course_lib.gpt``'s kernels:
log-probabilities come from running the model on each real prefix alone,
one token at a time; sampling is judged by the frequencies of many draws
against softmax(logits / temperature) computed by hand.
"""

from __future__ import annotations

import math

import torch

from ..gpt import GPT, GPTConfig
from . import assert_close

__all__ = ["check_sequence_logprobs", "check_sample_next_token", "tiny_policy"]


def tiny_policy(seed: int = 0, vocab_size: int = 13) -> GPT:
    """A small random GPT whose weights are large enough that a wrong index gives a visibly wrong number."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=16))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model.eval()


# ---------------------------------------------------------------- sequence_logprobs
def _logprobs_loop(model: GPT, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Entry [b, t]: log pi(ids[b, t] | the real tokens before it), computed on that prefix alone."""
    B, T = ids.shape
    out = torch.zeros(B, T)
    with torch.no_grad():
        for b in range(B):
            for t in range(1, T):
                if not (mask[b, t] and mask[b, t - 1]):
                    continue  # padding, or a first token with nothing before it
                prefix = ids[b, :t][mask[b, :t].bool()]
                logits = model(prefix[None])[0, -1]
                z = logits.tolist()
                top = max(z)
                log_norm = top + math.log(sum(math.exp(v - top) for v in z))
                out[b, t] = z[int(ids[b, t])] - log_norm
    return out


def _logprobs_cases(hidden: bool):
    gen = torch.Generator().manual_seed(1 if hidden else 0)

    def ids_like(mask, vocab=13):
        return torch.randint(3, vocab, mask.shape, generator=gen) * mask

    ones = torch.ones(2, 6, dtype=torch.long)
    yield "two full rows, no padding", ids_like(ones), ones
    right = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0]])
    yield "completions that ended early (right padding)", ids_like(right), right
    left = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1]])
    yield "prompts of different lengths (left padding)", ids_like(left), left
    if hidden:
        both = torch.tensor([[0, 0, 1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1, 1, 0], [0, 0, 0, 0, 0, 1, 1, 1]])
        yield "left and right padding together", ids_like(both), both
        single = torch.tensor([[0, 0, 0, 1], [0, 0, 1, 1]])
        yield "a row with one real token (nothing to score)", ids_like(single), single
        yield "one row of two tokens", ids_like(torch.ones(1, 2, dtype=torch.long)), torch.ones(1, 2, dtype=torch.long)


def _diagnose_logprobs(model, ids, mask, got) -> str:
    """Name the likely mistake by comparing ``got`` with common wrong answers."""
    if not isinstance(got, torch.Tensor):
        return ""
    if got.shape == (ids.shape[0], ids.shape[1] - 1):
        return " Hint: return shape (B, T), with 0 at position 0 (the first token has no prefix to score it)."
    if got.shape != ids.shape:
        return ""
    with torch.no_grad():
        logits = model(ids, attention_mask=mask)
        logp = torch.log_softmax(logits, dim=-1)
        same_position = logp.gather(-1, ids[..., None]).squeeze(-1)
        scored = torch.zeros_like(mask, dtype=torch.bool)
        scored[:, 1:] = mask[:, 1:].bool() & mask[:, :-1].bool()
        unmasked = torch.zeros_like(got)
        unmasked[:, 1:] = logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    if torch.allclose(got * scored, same_position * scored, atol=1e-4) or torch.allclose(got, same_position * mask, atol=1e-4):
        return (" Hint: your entry t looks like log softmax(logits[:, t])[x_t]; but the logits at position t score"
                " the NEXT token. Token t is scored by the logits at t - 1 (an off-by-one).")
    if torch.allclose(got * scored, unmasked * scored, atol=1e-4) and not torch.allclose(got * ~scored, torch.zeros_like(got), atol=1e-6):
        return (" Hint: the values at real positions are right, but padded positions (and tokens with no real"
                " token before them) must be 0: multiply by the mask.")
    return ""


def check_sequence_logprobs(sequence_logprobs, hidden: bool = False) -> None:
    """Check ``sequence_logprobs(model, input_ids, attention_mask)`` against one prefix at a time."""
    n = 0
    for case, ids, mask in _logprobs_cases(hidden):
        model = tiny_policy(n)
        expected = _logprobs_loop(model, ids, mask)
        with torch.no_grad():
            got = sequence_logprobs(model, ids.clone(), mask.clone())
        try:
            assert_close(got, expected, "sequence_logprobs", case, atol=1e-4, rtol=1e-4,
                         labels=lambda idx: f"row {idx[0]}, position {idx[1]}")
        except AssertionError as err:
            raise AssertionError(str(err) + _diagnose_logprobs(model, ids, mask, got)) from None
        n += 1
    # The RL chapters backpropagate through these numbers: they must carry gradients.
    model = tiny_policy(7)
    ids = torch.tensor([[1, 5, 6, 7, 8]])
    got = sequence_logprobs(model, ids, torch.ones_like(ids))
    if not isinstance(got, torch.Tensor) or not got.requires_grad:
        raise AssertionError("sequence_logprobs, case 'gradients': the result carries no gradient. "
                             "Do not wrap the computation in torch.no_grad() or call .detach()/.item().")
    print(f"sequence_logprobs: all {n} cases pass, and gradients flow.")


# ---------------------------------------------------------------- sample_next_token
def _probabilities(logits: list[float], temperature: float, top_k) -> list[float]:
    """softmax(logits / T) over the top_k largest logits, written out by hand."""
    z = [v / temperature for v in logits]
    order = sorted(range(len(z)), key=lambda i: -z[i])
    keep = set(order[: top_k or len(z)])
    top = max(z)
    w = [math.exp(z[i] - top) if i in keep else 0.0 for i in range(len(z))]
    return [v / sum(w) for v in w]


def _sampling_cases(hidden: bool):
    base = [2.0, 1.0, 0.0, -1.0, 0.5, -0.5]
    yield "temperature 1, no top-k", base, 1.0, None
    yield "temperature 0.5 (sharper)", base, 0.5, None
    yield "temperature 2 (flatter)", base, 2.0, None
    yield "top_k = 3 at temperature 1", base, 1.0, 3
    if hidden:
        yield "top_k = 2 at temperature 0.7", base, 0.7, 2
        yield "top_k = V keeps every token", base, 1.0, 6
        yield "temperature 3 with top_k 4", [0.3, -1.2, 2.2, 0.0, 1.1, -0.4], 3.0, 4


def _check_greedy(sample_next_token, case, logits, **kwargs):
    got = sample_next_token(logits.clone(), generator=torch.Generator().manual_seed(0), **kwargs)
    if got is None:
        raise AssertionError(f"sample_next_token returned None for case '{case}'. Did you forget `return`?")
    if not isinstance(got, torch.Tensor) or got.shape != (logits.shape[0],):
        shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(f"sample_next_token, case '{case}': expected a tensor of shape (B,) = ({logits.shape[0]},); got {shape}")
    expected = logits.argmax(dim=-1)
    wrong = (got != expected).nonzero()
    if len(wrong):
        b = int(wrong[0, 0])
        raise AssertionError(f"sample_next_token, case '{case}': row {b} should be the argmax {int(expected[b])}; got {int(got[b])}")


def check_sample_next_token(sample_next_token, hidden: bool = False) -> None:
    """Check ``sample_next_token(logits, temperature, top_k, generator)`` by greedy cases and draw frequencies."""
    gen = torch.Generator().manual_seed(11 if hidden else 10)
    logits = torch.randn(64, 9, generator=gen) * 2
    _check_greedy(sample_next_token, "temperature 0 is greedy (argmax)", logits, temperature=0.0)
    _check_greedy(sample_next_token, "top_k = 1 is greedy at any temperature", logits, temperature=1.0, top_k=1)
    n_draws = 20000
    n = 2
    for case, z, temperature, top_k in _sampling_cases(hidden):
        rows = torch.tensor(z).expand(n_draws, len(z)).clone()
        draws = sample_next_token(rows, temperature=temperature, top_k=top_k, generator=torch.Generator().manual_seed(n))
        if not isinstance(draws, torch.Tensor) or draws.shape != (n_draws,):
            shape = tuple(draws.shape) if isinstance(draws, torch.Tensor) else type(draws).__name__
            raise AssertionError(f"sample_next_token, case '{case}': expected shape (B,) = ({n_draws},); got {shape}")
        freq = torch.bincount(draws.long(), minlength=len(z)).double() / n_draws
        expected = torch.tensor(_probabilities(z, temperature, top_k), dtype=torch.float64)
        outside = ((expected == 0) & (freq > 0)).nonzero()
        if len(outside):
            i = int(outside[0])
            raise AssertionError(f"sample_next_token, case '{case}': token {i} is not among the top {top_k} "
                                 f"logits but was drawn {int(freq[i] * n_draws)} times in {n_draws}")
        # 20000 draws: a frequency's standard error is at most 0.0036, so 0.015 is over 4 of them.
        assert_close(freq, expected, f"sample_next_token (frequency of each token over {n_draws} draws)", case,
                     atol=0.015, rtol=0.0, labels=lambda idx: f"token {idx[0]}")
        n += 1
    print(f"sample_next_token: all {n} cases pass.")
