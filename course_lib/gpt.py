"""A small GPT-2, written to be read: the policy of chapters 10-14.

The architecture is GPT-2's (Radford et al., 2019, "Language Models are
Unsupervised Multitask Learners"): learned token and position embeddings,
pre-LayerNorm transformer blocks (causal self-attention, then a GELU MLP, each
added back to the residual stream), a final LayerNorm, and an output layer
that shares its weights with the token embedding. Module names equal the keys
of a GPT-2 checkpoint (``transformer.wte``, ``transformer.h.0.attn.c_attn``,
...), so real GPT-2 weights load by name with ``GPT.from_pretrained``.

Letters used in shapes: B batch, T tokens (time), C embedding width
(``n_embd``), nh heads, hs = C / nh head size, V vocabulary, L keys in the
attention (past plus current tokens).

What the RL chapters use:

* ``generate``: batched sampling with a KV cache, left-padded prompts of
  different lengths, stopping each sequence at its own EOS;
* ``sample_next_token``: one sampling step with temperature and top-k;
* ``sequence_logprobs``: log pi(token | prefix) for every token of a batch;
* ``token_logprobs`` and ``entropy_from_logits``: the two kernels on logits;
* ``GPT(config, value_head=True)``: a scalar per position for critics and
  reward models;
* ``skip_padding=True`` (``hidden_states``, ``forward``, ``values``,
  ``sequence_logprobs``): the same numbers without computing the padding;
* ``keep_last=K`` (``hidden_states``, ``forward``, ``values``): the last K
  positions only, with the last block's queries and MLP run there alone;
* ``GPT.shared_prompt_states`` and ``generate(..., num_samples=G)``: G
  continuations of each prompt with the prompt run once (GRPO's groups).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "GPTConfig",
    "GPT",
    "KVCache",
    "SharedPrompts",
    "left_pad",
    "token_logprobs",
    "entropy_from_logits",
    "sequence_logprobs",
    "reward_at_end",
    "sample_next_token",
    "generate",
    "with_value_head",
]


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT-2 (GPT-2 small: V=50257, block 1024, 12 layers, 12 heads, C=768).

    The defaults are close to the course's base model (about 0.8M weights);
    ``course_lib.pretrain.model_config`` sets its vocabulary and block size.
    """

    vocab_size: int = 64  # V: number of token ids; the output softmax is over this many actions
    block_size: int = 64  # longest sequence (prompt plus completion) the model can see; rows of wpe
    n_layer: int = 4  # transformer blocks stacked on the residual stream
    n_head: int = 4  # attention heads per block; n_embd must be divisible by it
    n_embd: int = 128  # C: width of the residual stream (GPT-2 small: 768)
    dropout: float = 0.0  # dropout on attention weights and residual branches while training
    layer_norm_epsilon: float = 1e-5  # GPT-2's LayerNorm epsilon, needed to reproduce its logits

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1); got {self.dropout}")


# ---------------------------------------------------------------- the KV cache
class KVCache:
    """Keys and values of every layer for the tokens seen so far, preallocated once.

    ``kv`` holds the keys and values, shape (n_layer, 2, B, nh, max_len, hs)
    (index 0 of the second axis: keys, 1: values); ``length`` is the number of
    positions filled. ``key_bias`` (B, 1, 1, max_len) is added to the
    attention scores: 0 where a position holds a real token, -inf where it
    holds padding, so no later query attends to a pad. ``n_real`` (B, 1)
    counts the real tokens so far: the position id of the next one.
    Writing into preallocated buffers avoids a ``torch.cat`` (a copy of the
    whole cache) per generated token.
    """

    def __init__(self, config: GPTConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        if max_len > config.block_size:
            raise ValueError(f"max_len ({max_len}) exceeds the model's block_size ({config.block_size})")
        hs = config.n_embd // config.n_head
        # Never read before it is written (attention only looks at the first `length`
        # positions), so it need not be zeroed: allocating is free, zeroing is not.
        self.kv = torch.empty(config.n_layer, 2, batch_size, config.n_head, max_len, hs, device=device, dtype=dtype)
        self.layers = self.kv.unbind(0)  # one (2, B, nh, max_len, hs) view per layer, made once
        self.key_bias = torch.zeros(batch_size, 1, 1, max_len, device=device, dtype=dtype)
        self.n_real = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
        self.length = 0
        self.padded = False  # has any pad been written? If not, no mask is needed at all

    @property
    def max_len(self) -> int:
        return self.kv.shape[4]

    def repeat_rows(self, repeats: int, max_len: int) -> "KVCache":
        """A new cache of ``repeats`` x the rows, room for ``max_len`` positions: row b becomes rows
        b * repeats ... b * repeats + repeats - 1, each holding row b's positions so far."""
        if repeats < 1:
            raise ValueError(f"repeats must be >= 1; got {repeats}")
        n_layer, _, B, n_head, _, hs = self.kv.shape
        new = KVCache.__new__(KVCache)
        new.kv = torch.empty(n_layer, 2, B * repeats, n_head, max_len, hs, device=self.kv.device, dtype=self.kv.dtype)
        new.kv[..., : self.length, :] = self.kv[..., : self.length, :].repeat_interleave(repeats, dim=2)
        new.layers = new.kv.unbind(0)
        new.key_bias = torch.zeros(B * repeats, 1, 1, max_len, device=self.kv.device, dtype=self.kv.dtype)
        new.key_bias[..., : self.length] = self.key_bias[..., : self.length].repeat_interleave(repeats, dim=0)
        new.n_real = self.n_real.repeat_interleave(repeats, dim=0)
        new.length, new.padded = self.length, self.padded
        return new

    def select_rows(self, rows: torch.Tensor) -> "KVCache":
        """A new cache holding only ``rows`` (a 1-D index tensor) of this one, in that order, with the same room."""
        n_layer, _, _, n_head, max_len, hs = self.kv.shape
        new = KVCache.__new__(KVCache)
        new.kv = torch.empty(n_layer, 2, len(rows), n_head, max_len, hs, device=self.kv.device, dtype=self.kv.dtype)
        new.kv[..., : self.length, :] = self.kv[..., : self.length, :].index_select(2, rows)
        new.layers = new.kv.unbind(0)
        new.key_bias = self.key_bias.index_select(0, rows)
        new.n_real = self.n_real.index_select(0, rows)
        new.length, new.padded = self.length, self.padded
        return new


class SharedPrompts:
    """Keys and values of N prompts, each continued by ``group_size`` rows (``GPT.shared_prompt_states``).

    GRPO samples G completions of every prompt, so a plain batch would run each prompt G
    times through the network, forward and backward. Here the prompts run once; every
    continuation row reads its prompt's keys and values, repeated G times. Unlike
    ``KVCache`` (inference only, written in place), the tensors keep their autograd graph,
    so the gradients of all G continuations flow back into the one shared prompt pass,
    summed, exactly as the G copies would have received them.
    ``kv`` holds one (keys, values) pair per layer, each (N, nh, P, hs).
    """

    def __init__(self, group_size: int):
        self.group_size = group_size
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.recording = True  # the prompt pass stores keys and values; the continuation pass reads them


def _attention_bias(key_bias: torch.Tensor, T: int) -> torch.Tensor:
    """The additive attention mask (B, 1, T, L) for queries at the last T of L positions.

    key_bias: (B, 1, 1, L), 0 for a real key and -inf for a pad. A query also never sees a
    later key; and it always sees itself, since a padded query with no key at all would
    give the softmax of nothing (NaN).
    """
    L = key_bias.shape[-1]
    q_pos = torch.arange(L - T, L, device=key_bias.device)[:, None]  # (T, 1)
    k_pos = torch.arange(L, device=key_bias.device)[None, :]  # (1, L)
    return key_bias.masked_fill(k_pos > q_pos, float("-inf")).masked_fill(k_pos == q_pos, 0.0)


@dataclass
class _Kept:
    """Which outputs ``hidden_states(..., keep_last=K)`` computes in its last block.

    K: the last K positions of each row. bias: the attention mask of their queries in the
    padded layout when it has no padding (the fused causal kernel assumes as many queries
    as keys). With ``skip_padding``: rows, the indices into the (N, C) real tokens of the
    kept ones; packed_index, where those sit in the packed attention grid; grid_index,
    where they go in the (B, K) output.
    """

    K: int
    bias: torch.Tensor | None = None
    rows: torch.Tensor | None = None
    packed_index: torch.Tensor | None = None
    grid_index: torch.Tensor | None = None


# ---------------------------------------------------------------- the blocks
class Conv1D(nn.Module):
    """GPT-2's name for a linear layer that stores its weight as (in, out): y = x @ weight + bias.

    (The name is historical: a 1x1 convolution is a linear map.) ``nn.Linear``
    stores (out, in) and computes x @ weight.T; keeping GPT-2's layout means
    checkpoints load as they are, and for the small batches of token-by-token
    generation ``addmm`` with an (in, out) matrix is the faster kernel on CPU.
    """

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))
        nn.init.normal_(self.weight, mean=0.0, std=0.02)

    def forward(self, x):
        *lead, n_in = x.shape
        return torch.addmm(self.bias, x.reshape(-1, n_in), self.weight).view(*lead, -1)


def _dropout(x, p: float, training: bool):
    """Dropout while training with p > 0; otherwise x itself, at no cost (generation runs this often)."""
    return F.dropout(x, p, training=True) if training and p > 0 else x


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.c_attn = Conv1D(config.n_embd, 3 * config.n_embd)  # q, k, v for all heads in one matmul
        self.c_proj = Conv1D(config.n_embd, config.n_embd)
        self.dropout = config.dropout

    def forward(self, x, attn_bias=None, cache: KVCache | None = None, layer: int = 0, packed_index=None, shape=None,
                keep: "_Kept | None" = None):
        if packed_index is None:
            B, T, C = x.shape
            qkv = self.c_attn(x)
        else:  # x holds only the real tokens (N, C): pack each row's q, k, v to the left of a (B, L) grid, zeros after
            (B, T), C = shape, x.shape[-1]
            qkv = x.new_zeros(B * T, 3 * C).index_copy_(0, packed_index, self.c_attn(x))
        qkv = qkv.view(B, T, 3, self.n_head, C // self.n_head).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        if cache is None:
            q, k, v = qkv.unbind(0)  # (B, nh, T, hs) each
        elif isinstance(cache, SharedPrompts):
            q, k, v = qkv.unbind(0)
            if cache.recording:
                cache.kv.append((k, v))
            else:  # each row first reads its prompt's keys and values, then its own
                prompt_k, prompt_v = cache.kv[layer]
                k = torch.cat([prompt_k.repeat_interleave(cache.group_size, dim=0), k], dim=2)
                v = torch.cat([prompt_v.repeat_interleave(cache.group_size, dim=0), v], dim=2)
        else:
            kv = cache.layers[layer]  # (2, B, nh, max_len, hs)
            kv[:, :, :, cache.length : cache.length + T] = qkv[1:]  # store this segment's keys and values
            k, v = kv[:, :, :, : cache.length + T].unbind(0)  # (B, nh, L, hs) each: every key so far
            q = qkv[0]  # (B, nh, T, hs)
        if keep is not None and packed_index is None:  # every key, but queries at the last K positions only
            q = q[:, :, -keep.K :]
            attn_bias = keep.bias if attn_bias is None else attn_bias[:, :, -keep.K :]
            T = keep.K
        dropout = self.dropout if self.training else 0.0
        if attn_bias is None:  # nothing hidden but the future: the fused causal kernel
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=T > 1)
        else:  # attn_bias (B, 1, T, L): 0 where a query may look, -inf elsewhere
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, dropout_p=dropout)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        if packed_index is not None:  # (N, C): back to the real tokens (the kept ones when keeping)
            y = y.reshape(B * T, C).index_select(0, packed_index if keep is None else keep.packed_index)
        return _dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Conv1D(config.n_embd, 4 * config.n_embd)
        self.c_proj = Conv1D(4 * config.n_embd, config.n_embd)
        self.dropout = config.dropout

    def forward(self, x):
        # GPT-2 uses the tanh approximation of GELU ("gelu_new" in its config).
        return _dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")), self.dropout, self.training)


class Block(nn.Module):
    """x + attn(ln_1(x)), then x + mlp(ln_2(x)): GPT-2 normalises before each branch."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, attn_bias=None, cache=None, layer=0, packed_index=None, shape=None, keep=None):
        y = self.attn(self.ln_1(x), attn_bias, cache, layer, packed_index, shape, keep)
        if keep is not None:  # the residual stream of the kept positions only
            x = x[:, -keep.K :] if packed_index is None else x.index_select(0, keep.rows)
        x = x + y
        return x + self.mlp(self.ln_2(x))


# ---------------------------------------------------------------- the model
class GPT(nn.Module):
    """GPT-2: ``logits = GPT(config)(idx)`` maps token ids (B, T) to next-token logits (B, T, V).

    ``logits[b, t]`` scores the token that follows ``idx[b, :t + 1]``: it is the
    policy pi(. | s_t) in the state "prefix up to and including token t".

    With ``value_head=True`` the model also has ``value_head``, a linear map
    from the final hidden state to one scalar per position (``values``), for
    the critic and the reward model of the RL chapters.
    """

    def __init__(self, config: GPTConfig, value_head: bool = False):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2 (Press & Wolf, 2017)
        self.value_head = nn.Linear(config.n_embd, 1) if value_head else None
        self.apply(self._init_weights)
        # GPT-2 scales the init of the layers that write into the residual stream
        # by 1/sqrt(2 n_layer), so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        if self.value_head is not None:
            nn.init.zeros_(self.value_head.weight)  # V = 0 everywhere until trained
            nn.init.zeros_(self.value_head.bias)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, Conv1D)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        """Number of weights (the tied output layer counted once)."""
        return sum(p.numel() for p in self.parameters())

    # ------------------------------------------------------------ forward passes
    def hidden_states(self, idx, attention_mask=None, position_ids=None, cache: KVCache | None = None,
                      skip_padding: bool = False, keep_last: int | None = None):
        """Final hidden states (B, T, C) after ``ln_f``.

        idx: (B, T) token ids. attention_mask: (B, T) with 1 for real tokens and
        0 for padding (any mix of left and right padding), or None for all real.
        position_ids: (B, T), or None to count real tokens (so a left-padded
        prompt starts at position 0 just like an unpadded one). cache: a
        ``KVCache`` holding earlier tokens; their keys are attended to and this
        call appends the new ones.

        skip_padding: run the per-token layers (LayerNorms, the q/k/v and output
        projections, the MLP) on the real tokens only; padded positions come back
        as zeros. For the attention each row's real tokens are packed side by side
        from the left, so plain causal attention is exact for them and the grid is
        only as long as the longest row. A pad never reaches a real token, so the
        real positions get the same numbers; a batch that is one third padding then
        costs about two thirds (the "unpadded" or "padding-free" layout of
        FlashAttention's variable-length kernels and Hugging Face's padding-free
        training). Without a cache only.

        keep_last: return only the last K positions, (B, K, C). Earlier positions
        still feed the keys and values of every layer, but the last block runs its
        queries, output projection and MLP (and ``ln_f``) on the K kept positions
        only: nothing else reaches them. A policy needs the states that score its
        completion, not those inside the prompt (Hugging Face's ``logits_to_keep``
        skips only the output layer). Without a cache only.
        """
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (B, T); got {tuple(idx.shape)}")
        B, T = idx.shape
        past = 0 if cache is None else cache.length
        if past + T > self.config.block_size:
            raise ValueError(f"sequence length {past + T} exceeds block_size {self.config.block_size}")
        if cache is not None and past + T > cache.max_len:
            raise ValueError(f"the KV cache holds {cache.max_len} positions; {past + T} needed")
        if attention_mask is not None and attention_mask.shape != idx.shape:
            raise ValueError(f"attention_mask must have the shape of idx {tuple(idx.shape)}; got {tuple(attention_mask.shape)}")
        if position_ids is not None and int(position_ids.max()) >= self.config.block_size:
            raise ValueError(f"position ids reach {int(position_ids.max())}; block_size is {self.config.block_size}")
        real = None if attention_mask is None or bool(attention_mask.all()) else attention_mask.bool()  # (B, T)
        padded = real is not None or (cache is not None and cache.padded)
        skip = skip_padding and real is not None
        if skip and cache is not None:
            raise ValueError("skip_padding works without a cache only")
        if keep_last is not None:
            if cache is not None:
                raise ValueError("keep_last works without a cache only")
            if not 1 <= int(keep_last) <= T:
                raise ValueError(f"keep_last must lie in [1, T] = [1, {T}]; got {keep_last}")
            keep_last = int(keep_last)

        if position_ids is None:
            if cache is not None and T == 1 and real is None:
                position_ids = cache.n_real  # (B, 1): one new real token, numbered after the real ones so far
            elif not padded:
                position_ids = torch.arange(past, past + T, device=idx.device)[None, :]  # (1, T)
            else:  # count real tokens: a left-padded row starts at 0 like an unpadded one
                before = 0 if cache is None else cache.n_real  # (B, 1)
                count = real.long().cumsum(dim=1) if real is not None else torch.arange(1, T + 1, device=idx.device)
                position_ids = (before + count - 1).clamp(min=0)  # (B, T)

        attn_bias = None
        if skip:
            pass  # the packed rows below need no mask: the fused causal kernel alone is exact for them
        elif padded and T == 1 and real is None:
            attn_bias = cache.key_bias[..., : past + 1]  # a real new token: the stored row is the whole mask
        elif padded or (past > 0 and T > 1):
            dtype = self.transformer.wte.weight.dtype  # SDPA wants the mask in the dtype of the scores
            keys = torch.zeros(B, 1, 1, T, device=idx.device, dtype=dtype)
            if real is not None:
                keys = keys.masked_fill(~real[:, None, None, :], float("-inf"))
            if cache is not None:
                keys = torch.cat([cache.key_bias[..., :past], keys], dim=-1)  # (B, 1, 1, L)
            attn_bias = _attention_bias(keys, T)  # (B, 1, T, L)

        if cache is not None:
            if real is not None:
                cache.key_bias[:, 0, 0, past : past + T].masked_fill_(~real, float("-inf"))
                cache.n_real = cache.n_real + real.sum(dim=1, keepdim=True)
            else:
                cache.n_real = cache.n_real + T  # a new tensor: position_ids may be the old one
            cache.padded = padded

        packed_index, grid = None, (B, T)
        if skip:  # from here on x holds the real tokens only, (N, C)
            real_index = real.flatten().nonzero().squeeze(1)  # (N,): the real tokens of the (B, T) grid, row by row
            # The attention sees each row's real tokens side by side from column 0 of a (B, L) grid, L the
            # longest row's count, pads after them: a query's causal past is then exactly its row's earlier
            # real tokens, so the fused causal kernel needs no mask (FlashAttention's variable-length layout,
            # padded to the longest row).
            rank = real.long().cumsum(dim=1) - 1  # (B, T): each real token's place among its row's real tokens
            L = max(1, int(rank[:, -1].max()) + 1)
            packed_index = (torch.arange(B, device=idx.device)[:, None] * L + rank).flatten().index_select(0, real_index)
            grid = (B, L)
            idx = idx.flatten().index_select(0, real_index)
            position_ids = position_ids.expand(B, T).flatten().index_select(0, real_index)
        kept = None
        if keep_last is not None:
            K = keep_last
            kept = _Kept(K)
            if skip:  # all queries in the packed grid (the kept ones are not a common suffix there), then the kept
                column = real_index % T
                kept.rows = (column >= T - K).nonzero().squeeze(1)  # (N_kept,): into the real tokens
                kept.packed_index = packed_index.index_select(0, kept.rows)
                chosen = real_index.index_select(0, kept.rows)
                kept.grid_index = chosen // T * K + chosen % T - (T - K)  # (N_kept,): into the (B, K) output
            elif attn_bias is None:  # causal, with the K queries at the end of the T keys
                kept.bias = _attention_bias(torch.zeros(1, 1, 1, T, device=idx.device, dtype=self.transformer.wte.weight.dtype), K)
        x = self.transformer.wte(idx) + self.transformer.wpe(position_ids)  # (B, T, C), or (N, C)
        x = _dropout(x, self.config.dropout, self.training)
        last = len(self.transformer.h) - 1
        for layer, block in enumerate(self.transformer.h):
            x = block(x, attn_bias, cache, layer, packed_index, grid, kept if layer == last else None)
        if cache is not None:
            cache.length = past + T
        x = self.transformer.ln_f(x)
        if skip:  # back to (B, T, C) or (B, K, C), zeros at the pads
            rows, index = (T, real_index) if kept is None else (kept.K, kept.grid_index)
            x = x.new_zeros(B * rows, x.shape[-1]).index_copy_(0, index, x).view(B, rows, -1)
        return x

    def shared_prompt_states(self, prompt_ids, prompt_mask, continuations, group_size: int):
        """Hidden states of ``group_size`` continuations of each prompt, the prompts run only once.

        prompt_ids, prompt_mask: (N, P), left-padded (1 for real tokens). continuations:
        (N * G, T) token ids; rows n * G ... n * G + G - 1 continue prompt n, with right
        padding allowed (a pad only follows the real tokens, so no real token sees it).
        Returns ``last`` (N, C), the final hidden state of each prompt's last token (it
        scores every continuation's first token), and ``states`` (N * G, T, C). They equal
        ``hidden_states`` of the repeated, concatenated rows (prompt then continuation) at
        those positions, at 1 / G of the prompt's cost; gradients flow through both
        (``SharedPrompts``). Real continuation tokens get the positions that follow their
        prompt's real tokens, as ``generate`` numbers them.
        """
        if prompt_ids.dim() != 2 or prompt_mask.shape != prompt_ids.shape:
            raise ValueError(f"prompt_ids and prompt_mask must both have shape (N, P); got {tuple(prompt_ids.shape)} "
                             f"and {tuple(prompt_mask.shape)}")
        N, P = prompt_ids.shape
        if continuations.dim() != 2 or continuations.shape[0] != N * group_size:
            raise ValueError(f"continuations must have shape (N * group_size, T) = ({N * group_size}, T); "
                             f"got {tuple(continuations.shape)}")
        T = continuations.shape[1]
        if P + T > self.config.block_size:
            raise ValueError(f"sequence length {P + T} exceeds block_size {self.config.block_size}")
        real = prompt_mask.bool()
        if not bool(real[:, -1].all()):
            raise ValueError("prompt_mask: every prompt must end in its last column (pad on the left)")
        device, dtype = prompt_ids.device, self.transformer.wte.weight.dtype
        # Prompt pass: pads hidden from every query, the future too; each position sees itself.
        pad_bias = torch.zeros(N, 1, 1, P, device=device, dtype=dtype).masked_fill(~real[:, None, None, :], float("-inf"))
        bias = _attention_bias(pad_bias, P)
        position = (real.long().cumsum(dim=1) - 1).clamp(min=0)
        prompts = SharedPrompts(group_size)
        x = _dropout(self.transformer.wte(prompt_ids) + self.transformer.wpe(position), self.config.dropout, self.training)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, bias, prompts, layer)
        last = self.transformer.ln_f(x[:, -1])  # (N, C)
        if T == 0:
            return last, last.new_zeros(N * group_size, 0, last.shape[-1])
        # Continuation pass: every prompt key of the row's own prompt, then causal over the row.
        prompts.recording = False
        n_real = real.sum(dim=1, keepdim=True).repeat_interleave(group_size, dim=0)  # (N * G, 1)
        position = n_real + torch.arange(T, device=device)  # (N * G, T)
        keys = torch.cat([pad_bias.repeat_interleave(group_size, dim=0),
                          torch.zeros(N * group_size, 1, 1, T, device=device, dtype=dtype)], dim=-1)  # (N * G, 1, 1, P + T)
        bias = _attention_bias(keys, T)  # (N * G, 1, T, P + T)
        x = _dropout(self.transformer.wte(continuations) + self.transformer.wpe(position),
                     self.config.dropout, self.training)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, bias, prompts, layer)
        return last, self.transformer.ln_f(x)

    def forward(self, idx, attention_mask=None, position_ids=None, cache: KVCache | None = None, skip_padding: bool = False,
                keep_last: int | None = None):
        """Next-token logits (B, T, V), or (B, K, V) with ``keep_last=K``; arguments as in ``hidden_states``."""
        return self.lm_head(self.hidden_states(idx, attention_mask, position_ids, cache, skip_padding, keep_last))

    def values(self, idx, attention_mask=None, position_ids=None, skip_padding: bool = False, keep_last: int | None = None):
        """The value head's scalar at every position, (B, T), or (B, K) with ``keep_last=K``. Needs ``value_head=True``."""
        if self.value_head is None:
            raise ValueError("this model has no value head; build it with GPT(config, value_head=True) or with_value_head(model)")
        h = self.hidden_states(idx, attention_mask, position_ids, skip_padding=skip_padding, keep_last=keep_last)
        return self.value_head(h).squeeze(-1)

    def logits_and_values(self, idx, attention_mask=None, position_ids=None):
        """Logits (B, T, V) and values (B, T) from one pass through the shared trunk."""
        if self.value_head is None:
            raise ValueError("this model has no value head; build it with GPT(config, value_head=True) or with_value_head(model)")
        h = self.hidden_states(idx, attention_mask, position_ids)
        return self.lm_head(h), self.value_head(h).squeeze(-1)

    # ------------------------------------------------------------ GPT-2 checkpoints
    @classmethod
    def from_pretrained(cls, path, value_head: bool = False) -> "GPT":
        """Load GPT-2 weights saved in the Hugging Face layout from a local folder.

        The folder holds ``config.json`` and ``model.safetensors`` (or a sharded
        ``model.safetensors.index.json``, or ``pytorch_model.bin``). Nothing is
        downloaded. GPT-2 stores its four projection matrices as Conv1D weights
        of shape (in, out), the layout of ``Conv1D`` here, so they load as they
        are (a model built on ``nn.Linear`` would transpose them).
        """
        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"path must be a local folder with config.json and the weights; got {str(path)!r}")
        hf = json.loads((folder / "config.json").read_text())
        activation = hf.get("activation_function", "gelu_new")
        if activation not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"config.json: activation_function {activation!r} is not GPT-2's tanh GELU")
        config = GPTConfig(
            vocab_size=hf["vocab_size"],
            block_size=hf.get("n_positions", hf.get("n_ctx", 1024)),
            n_layer=hf["n_layer"],
            n_head=hf["n_head"],
            n_embd=hf["n_embd"],
            dropout=0.0,
            layer_norm_epsilon=hf.get("layer_norm_epsilon", 1e-5),
        )
        model = cls(config, value_head=value_head)
        ours = model.state_dict()
        checkpoint = _read_checkpoint(folder)
        wte = checkpoint.get("transformer.wte.weight", checkpoint.get("wte.weight"))
        if "lm_head.weight" in checkpoint and wte is not None and not torch.equal(checkpoint["lm_head.weight"], wte):
            raise ValueError("checkpoint has an output layer that differs from wte; GPT-2 ties them and so does GPT")
        loaded = set()
        for key, tensor in checkpoint.items():
            if key.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # causal-mask buffers of older checkpoints, not weights
            name = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
            if name not in ours:
                raise ValueError(f"checkpoint key {key!r} has no counterpart in GPT")
            if tensor.shape != ours[name].shape:
                raise ValueError(f"checkpoint key {key!r} has shape {tuple(tensor.shape)}; expected {tuple(ours[name].shape)}")
            with torch.no_grad():
                ours[name].copy_(tensor)
            loaded.add(name)
        missing = {k for k in ours if not k.startswith("value_head.")} - loaded - {"lm_head.weight"}
        if missing:
            raise ValueError(f"checkpoint misses weights: {sorted(missing)[:5]}")
        return model


def _read_checkpoint(folder: Path) -> dict:
    if (folder / "model.safetensors").exists():
        from safetensors.torch import load_file

        return load_file(folder / "model.safetensors")
    if (folder / "model.safetensors.index.json").exists():
        from safetensors.torch import load_file

        shards = sorted(set(json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
            state.update(load_file(folder / shard))
        return state
    if (folder / "pytorch_model.bin").exists():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ValueError(f"no model.safetensors or pytorch_model.bin in {str(folder)!r}")


def with_value_head(model: GPT) -> GPT:
    """A copy of ``model`` (same weights, no shared tensors) with a fresh, zero-initialised value head."""
    new = GPT(model.config, value_head=True)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("value_head.")}
    new.load_state_dict(state, strict=False)
    return new.to(next(model.parameters()).device)


# ---------------------------------------------------------------- kernels on logits
def token_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[..., target] for each position, shape (...,).

    logits: (..., V); targets: (...) integer ids. Computed as
    ``logits[target] - logsumexp(logits)``: the same number as
    ``log_softmax(logits).gather(targets)`` without keeping a (..., V) copy of
    the log-probabilities for the backward pass.

    Example: logits [0, ln 3] over V = 2 give probabilities [1/4, 3/4], so
    target 1 has log-prob ln(3/4) = -0.2877.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"targets must have shape logits.shape[:-1] = {tuple(logits.shape[:-1])}; got {tuple(targets.shape)}")
    picked = logits.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H = -sum_a p(a) log p(a) with p = softmax(logits), shape (...,) for logits (..., V).

    Example: equal logits over V = 4 give H = ln 4 = 1.386 nats.
    """
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(dim=-1)


def sequence_logprobs(model: GPT, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                      skip_padding: bool = False) -> torch.Tensor:
    """Per-token log-probabilities log pi(x_t | x_<t) of the given tokens, shape (B, T).

    input_ids: (B, T); attention_mask: (B, T), 1 for real tokens (padding may
    be on the left, the right, or both). Entry t is
    ``log softmax(logits[:, t - 1])[x_t]``: the logits at position t - 1 score
    token t. An entry is 0 where token t is padding and where it has no real
    token before it (position 0, or the first real token after left padding).
    The log-probability of a whole completion is the sum of its entries.

    Example: for x = [BOS, 7, 3] with mask [1, 1, 1] the result is
    [0, log pi(7 | BOS), log pi(3 | BOS 7)].

    skip_padding: compute only the real tokens (``GPT.hidden_states``); the same numbers.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (B, T); got {tuple(input_ids.shape)}")
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    if attention_mask.shape != input_ids.shape:
        raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}; got {tuple(attention_mask.shape)}")
    mask = attention_mask.bool()
    logits = model(input_ids, attention_mask=attention_mask, skip_padding=skip_padding)  # (B, T, V)
    logp = token_logprobs(logits[:, :-1], input_ids[:, 1:])  # (B, T - 1): logits at t - 1 score token t
    scored = mask[:, 1:] & mask[:, :-1]  # token t and a real token before it
    return F.pad(logp * scored, (1, 0))  # position 0 scores nothing


def reward_at_end(rewards: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Spread one reward per completion over its tokens: all of it on the last real token, shape (B, T).

    rewards: (B,); completion_mask: (B, T), 1 for generated tokens (EOS included).
    The reward of a completion arrives when the episode ends, so every earlier
    action gets 0 and the last one gets ``rewards[b]``. A row with no token
    gets nothing.

    Example: rewards [1.0, -2.0] with mask [[1, 1, 1], [1, 0, 0]] give
    [[0, 0, 1], [-2, 0, 0]].
    """
    if rewards.dim() != 1 or completion_mask.dim() != 2 or rewards.shape[0] != completion_mask.shape[0]:
        raise ValueError(f"rewards must have shape (B,) and completion_mask (B, T); got {tuple(rewards.shape)} and {tuple(completion_mask.shape)}")
    mask = completion_mask.bool()
    T = mask.shape[1]
    last = T - 1 - mask.flip(dims=[1]).long().argmax(dim=1)  # (B,): index of the last 1 in each row
    out = torch.zeros(mask.shape, dtype=rewards.dtype, device=rewards.device)
    out[torch.arange(len(rewards), device=rewards.device), last] = rewards
    return out * mask.any(dim=1, keepdim=True)


# ---------------------------------------------------------------- sampling
def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token per row from softmax(logits / temperature), keeping only the top_k logits.

    logits: (B, V). Returns (B,) token ids. ``temperature = 0`` means greedy
    (argmax). With ``top_k = k`` every logit below the k-th largest is set to
    -inf first, so only the k most likely tokens can be drawn; ``top_k = None``
    keeps all V.

    Example: logits [2, 1, 0] at temperature 1 give probabilities
    [0.665, 0.245, 0.090]; with top_k = 2, [0.731, 0.269, 0].
    """
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, V); got {tuple(logits.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    if top_k is not None and not 1 <= top_k:
        raise ValueError(f"top_k must be a positive int or None; got {top_k}")
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def left_pad(sequences: Sequence, pad_id: int = 0, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack sequences of different lengths, padding on the left.

    Returns ids (B, T) and mask (B, T) (1 for real tokens), T = the longest
    length. Left padding puts every prompt's last token in the last column, so
    a batch of prompts can be continued one column at a time.

    Example: [[5, 6, 7], [8]] -> ids [[5, 6, 7], [0, 0, 8]], mask [[1, 1, 1], [0, 0, 1]].
    """
    if len(sequences) == 0:
        raise ValueError("sequences must hold at least one sequence")
    rows = [torch.as_tensor(s, dtype=torch.long).flatten() for s in sequences]
    if any(len(r) == 0 for r in rows):
        raise ValueError("every sequence must hold at least one token")
    T = max(len(r) for r in rows)
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), T), dtype=torch.long)
    for b, r in enumerate(rows):
        ids[b, T - len(r):] = r
        mask[b, T - len(r):] = 1
    return ids.to(device), mask.to(device)


# generate drops finished rows from its KV cache once at most this share of the rows in it
# are still running (None: never; a test compares the two).
COMPACT_AT: float | None = 0.75


@torch.inference_mode()
def generate(
    model: GPT,
    prompt_ids,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    eos_id: int | None = None,
    generator: torch.Generator | None = None,
    attention_mask: torch.Tensor | None = None,
    pad_id: int = 0,
    use_cache: bool = True,
    num_samples: int = 1,
    return_logprobs: bool = False,
) -> tuple[torch.Tensor, ...]:
    """Sample completions for a batch of prompts: the policy acting for ``max_new_tokens`` steps.

    prompt_ids: a list of token-id sequences of any lengths (they are left-padded
    with ``pad_id``), or a (B, P) tensor, left-padded where ``attention_mask``
    (B, P) is 0. Each step draws one token per sequence with
    ``sample_next_token`` (``temperature = 0``: greedy). A sequence that draws
    ``eos_id`` is finished: its later positions hold ``pad_id``.

    Returns ``completions`` (B, max_new_tokens) and ``completion_mask``
    (B, max_new_tokens), 1 for generated tokens up to and including EOS.

    With ``use_cache`` (the default) the prompt is run once and each step feeds
    only the newest token, reading the keys and values of the earlier ones
    from a ``KVCache``; without it every step re-runs the whole sequence.
    Both give the same tokens. With the cache, rows that have finished leave the
    batch once a quarter of it has (``KVCache.select_rows``), so the later steps
    run on fewer rows; every row still draws with the random numbers it would
    have drawn in the full batch, so the tokens do not depend on it.

    ``num_samples = G`` continues every prompt G times: rows b * G ... b * G + G - 1 of
    the result belong to prompt b, and they are the same draws as for the prompts
    repeated G times in a row (GRPO's groups). The prompts are run once and their keys
    and values copied to the G rows (``KVCache.repeat_rows``).

    ``return_logprobs``: also return ``logprobs`` and ``entropy`` (B, max_new_tokens):
    log pi(token | state) of each drawn token and the entropy of pi(. | state), with pi
    = softmax(logits / temperature), the distribution the token was drawn from; 0 after
    a row's end. The sampler knows the probability of what it drew, so an RL rollout
    records pi_old here instead of running the policy over the completions again
    (chapter 9's rollouts record ``logp`` as they act, for the same reason). They match
    ``sequence_logprobs`` of the finished sequences up to float rounding. Needs
    ``temperature > 0`` and ``top_k = None``: a greedy or truncated sampler does not
    draw from pi.
    """
    if return_logprobs and (temperature <= 0 or top_k is not None):
        raise ValueError("return_logprobs needs the sampler to draw from softmax(logits / temperature): "
                         f"temperature > 0 and top_k None; got temperature={temperature}, top_k={top_k}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int; got {num_samples!r}")
    device = next(model.parameters()).device
    if isinstance(prompt_ids, torch.Tensor):
        if prompt_ids.dim() != 2:
            raise ValueError(f"prompt_ids must be a (B, P) tensor or a list of sequences; got shape {tuple(prompt_ids.shape)}")
        ids = prompt_ids.to(device)
        mask = torch.ones_like(ids) if attention_mask is None else attention_mask.to(device).long()
        if mask.shape != ids.shape:
            raise ValueError(f"attention_mask must have the shape of prompt_ids {tuple(ids.shape)}; got {tuple(mask.shape)}")
    else:
        if attention_mask is not None:
            raise ValueError("attention_mask is only for a padded prompt tensor; a list of sequences is padded here")
        ids, mask = left_pad(prompt_ids, pad_id, device)
    B, P = ids.shape
    if P + max_new_tokens > model.config.block_size:
        raise ValueError(f"prompt length {P} + max_new_tokens {max_new_tokens} exceeds block_size {model.config.block_size}")
    G = num_samples
    if G > 1 and not use_cache:  # nothing to share without a cache: repeat the prompts
        ids, mask = ids.repeat_interleave(G, dim=0), mask.repeat_interleave(G, dim=0)
    B = B * G

    was_training = model.training
    model.eval()
    completions = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    completion_mask = torch.zeros((B, max_new_tokens), dtype=torch.long, device=device)
    alive = torch.ones(B, dtype=torch.bool, device=device)
    dtype = next(model.parameters()).dtype
    if return_logprobs:
        logprobs = torch.zeros((B, max_new_tokens), dtype=dtype, device=device)
        entropy = torch.zeros((B, max_new_tokens), dtype=dtype, device=device)
    if use_cache:  # prefill: the whole prompt once, keep only the last position's logits
        cache = KVCache(model.config, B // G, P + (max_new_tokens if G == 1 else 0), device=device, dtype=dtype)
        logits = model.lm_head(model.hidden_states(ids, mask, cache=cache)[:, -1])  # (B / G, V)
        if G > 1:
            cache = cache.repeat_rows(G, P + max_new_tokens)
            logits = logits.repeat_interleave(G, dim=0)  # (B, V)
    rows = None  # with the cache: the rows still in it, once finished rows have left (None: all B)
    for t in range(max_new_tokens):
        if not use_cache:
            seq = torch.cat([ids, completions[:, :t]], dim=1)
            seq_mask = torch.cat([mask, torch.ones_like(completions[:, :t])], dim=1)
            logits = model.lm_head(model.hidden_states(seq, seq_mask)[:, -1])  # (B, V)
        elif rows is not None:
            # Back to B rows before drawing: the sampler spends its random numbers row by row,
            # so each row gets the ones it would have had with every row still in the batch.
            logits = logits.new_zeros(B, logits.shape[-1]).index_copy_(0, rows, logits)
        token = sample_next_token(logits, temperature, top_k, generator)  # (B,)
        if return_logprobs:
            tempered = logits / temperature
            logprobs[:, t] = token_logprobs(tempered, token)
            entropy[:, t] = entropy_from_logits(tempered)
        completions[:, t] = torch.where(alive, token, pad_id)
        completion_mask[:, t] = alive.long()
        if eos_id is not None:
            alive = alive & (token != eos_id)
            if not bool(alive.any()):
                break
        if use_cache and t + 1 < max_new_tokens:
            # Finished rows keep going until a quarter of the rows in the cache have
            # finished (their outputs are ignored); then they leave it. Copying the cache
            # costs about one step, so it is not done for every row that finishes.
            # The model sees every new token as real, which keeps the step free of mask arithmetic.
            in_cache = alive if rows is None else alive[rows]
            if COMPACT_AT is not None and int(in_cache.sum()) <= COMPACT_AT * len(in_cache):
                keep = in_cache.nonzero().squeeze(1)
                cache = cache.select_rows(keep)
                rows = keep if rows is None else rows[keep]
            new_tokens = completions[:, t : t + 1] if rows is None else completions[rows, t : t + 1]
            logits = model.lm_head(model.hidden_states(new_tokens, cache=cache)[:, -1])  # (rows, V)
    model.train(was_training)
    if return_logprobs:
        m = completion_mask.to(dtype)  # a finished row's later draws were never taken
        return completions, completion_mask, logprobs * m, entropy * m
    return completions, completion_mask
