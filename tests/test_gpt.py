"""course_lib.gpt: GPT-2 against Hugging Face's, the KV cache, padding, sampling and log-probs.

Every vectorised path is compared with a plain reference written here: one
sequence at a time, no padding, no cache.
"""

from __future__ import annotations

import math

import pytest
import torch

from course_lib.gpt import (
    GPT,
    GPTConfig,
    KVCache,
    entropy_from_logits,
    generate,
    left_pad,
    reward_at_end,
    sample_next_token,
    sequence_logprobs,
    token_logprobs,
    with_value_head,
)

TINY = GPTConfig(vocab_size=23, block_size=32, n_layer=2, n_head=2, n_embd=16)


def tiny_model(seed: int = 0, config: GPTConfig = TINY, value_head: bool = False, scale: float = 0.3) -> GPT:
    """A random model with larger-than-default weights, so that wrong code gives visibly wrong numbers."""
    torch.manual_seed(seed)
    model = GPT(config, value_head=value_head)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, scale)
    return model.eval()


# ---------------------------------------------------------------- Hugging Face reference
def _hf_model(seed=0, n_layer=2, n_head=4, n_embd=32, vocab_size=61, n_positions=40):
    transformers = pytest.importorskip("transformers")  # imported here: it is slow to import
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    hf = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():  # the default init is small; bigger weights make a wrong transpose show
        for p in hf.parameters():
            p.normal_(0.0, 0.2)
    hf.tie_weights()
    return hf


@pytest.mark.parametrize("safe", [True, False], ids=["safetensors", "pytorch_bin"])
def test_from_pretrained_matches_transformers(tmp_path, safe):
    hf = _hf_model()
    if safe:
        hf.save_pretrained(tmp_path)
        assert (tmp_path / "model.safetensors").exists()
    else:  # the older PyTorch format: a pickled state dict (transformers 5 only writes safetensors)
        hf.config.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    ours = GPT.from_pretrained(tmp_path)
    idx = torch.randint(0, 61, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits
        got = ours(idx)
    assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()


def test_from_pretrained_matches_transformers_with_left_padding(tmp_path):
    hf = _hf_model(seed=3)
    hf.save_pretrained(tmp_path)
    ours = GPT.from_pretrained(tmp_path)
    idx = torch.randint(0, 61, (3, 12), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(idx)
    mask[0, :5] = 0
    mask[2, :1] = 0
    position_ids = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        expected = hf(idx, attention_mask=mask, position_ids=position_ids).logits
        got = ours(idx, attention_mask=mask)  # positions are derived from the mask
    real = mask.bool()
    assert torch.allclose(got[real], expected[real], atol=1e-5)


def test_module_names_are_gpt2_checkpoint_keys():
    hf = _hf_model()
    theirs = {k for k in hf.state_dict() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    ours = set(GPT(GPTConfig(vocab_size=61, block_size=40, n_layer=2, n_head=4, n_embd=32)).state_dict())
    assert ours == theirs
    for key in ("transformer.wte.weight", "transformer.wpe.weight", "transformer.h.1.ln_1.weight",
                "transformer.h.0.attn.c_attn.weight", "transformer.h.0.mlp.c_fc.bias", "transformer.ln_f.bias"):
        assert key in ours


def test_from_pretrained_reads_a_bare_gpt2model(tmp_path):
    # GPT2Model (no LM head) saves keys without the "transformer." prefix.
    hf = _hf_model(seed=4)
    hf.transformer.save_pretrained(tmp_path)
    ours = GPT.from_pretrained(tmp_path)
    idx = torch.randint(0, 61, (2, 9))
    with torch.no_grad():
        assert torch.allclose(ours(idx), hf(idx).logits, atol=1e-5)


def test_from_pretrained_rejects_bad_folders(tmp_path):
    with pytest.raises(ValueError, match="path"):
        GPT.from_pretrained(tmp_path / "missing")
    _hf_model().config.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="model.safetensors"):
        GPT.from_pretrained(tmp_path)


def test_output_layer_is_tied_to_the_token_embedding():
    model = GPT(TINY)
    assert model.lm_head.weight is model.transformer.wte.weight
    n_untied = sum(p.numel() for p in model.parameters()) + TINY.vocab_size * TINY.n_embd
    assert model.num_parameters() == n_untied - TINY.vocab_size * TINY.n_embd


# ---------------------------------------------------------------- causality, padding, cache
def test_logits_do_not_depend_on_future_tokens():
    model = tiny_model()
    idx = torch.randint(0, 23, (2, 10))
    changed = idx.clone()
    changed[:, 6:] = (changed[:, 6:] + 1) % 23
    with torch.no_grad():
        a, b = model(idx), model(changed)
    assert torch.allclose(a[:, :6], b[:, :6], atol=1e-6)
    assert not torch.allclose(a[:, 6:], b[:, 6:], atol=1e-3)


def test_padding_anywhere_gives_the_unpadded_logits():
    model = tiny_model(1)
    seqs = [torch.randint(3, 23, (n,)) for n in (7, 3, 5, 1)]
    # Left padding for some rows, right padding for others, both for one.
    layouts = [(0, 1), (4, 1), (1, 2), (3, 4)]  # (left pads, right pads), total length 8
    rows, masks = [], []
    for s, (left, right) in zip(seqs, layouts):
        rows.append(torch.cat([torch.zeros(left, dtype=torch.long), s, torch.zeros(right, dtype=torch.long)]))
        masks.append(torch.cat([torch.zeros(left), torch.ones(len(s)), torch.zeros(right)]).long())
    idx, mask = torch.stack(rows), torch.stack(masks)
    with torch.no_grad():
        batched = model(idx, attention_mask=mask)
        for b, (s, (left, _)) in enumerate(zip(seqs, layouts)):
            alone = model(s[None])[0]
            assert torch.allclose(batched[b, left : left + len(s)], alone, atol=1e-5), f"row {b}"
    assert torch.isfinite(batched).all()  # padded rows too: no NaN from an all-masked softmax


def test_kv_cache_one_token_at_a_time_equals_the_full_pass():
    model = tiny_model(2)
    idx = torch.randint(0, 23, (3, 12))
    with torch.no_grad():
        full = model(idx)
        cache = KVCache(TINY, batch_size=3, max_len=12)
        chunks = [model(idx[:, :5], cache=cache)]  # prefill, then one token per call
        for t in range(5, 12):
            chunks.append(model(idx[:, t : t + 1], cache=cache))
    assert cache.length == 12
    assert torch.allclose(torch.cat(chunks, dim=1), full, atol=1e-5)


def test_kv_cache_with_left_padding():
    model = tiny_model(3)
    prompts = [torch.randint(3, 23, (n,)) for n in (6, 2, 4)]
    ids, mask = left_pad(prompts)
    extra = torch.randint(3, 23, (3, 4))
    with torch.no_grad():
        cache = KVCache(TINY, 3, 10)
        outs = [model(ids, attention_mask=mask, cache=cache)[:, -1:]]
        for t in range(4):
            outs.append(model(extra[:, t : t + 1], attention_mask=torch.ones(3, 1, dtype=torch.long), cache=cache))
        got = torch.cat(outs, dim=1)  # (B, 5, V): predictions after the prompt and after each extra token
        for b, p in enumerate(prompts):
            alone = model(torch.cat([p, extra[b]])[None])[0, len(p) - 1 :]
            assert torch.allclose(got[b], alone, atol=1e-5), f"row {b}"


def test_kv_cache_with_a_padded_new_token():
    # A pad fed through the cache must stay invisible to every later query.
    model = tiny_model(14)
    ids = torch.randint(3, 23, (2, 4))
    with torch.no_grad():
        cache = KVCache(TINY, 2, 6)
        model(ids, cache=cache)
        model(torch.tensor([[5], [0]]), attention_mask=torch.tensor([[1], [0]]), cache=cache)  # row 1 gets a pad
        last = model(torch.tensor([[7], [7]]), cache=cache)[:, -1]
        expected_0 = model(torch.cat([ids[0], torch.tensor([5, 7])])[None])[0, -1]
        expected_1 = model(torch.cat([ids[1], torch.tensor([7])])[None])[0, -1]
    assert torch.allclose(last[0], expected_0, atol=1e-5)
    assert torch.allclose(last[1], expected_1, atol=1e-5)


def test_kv_cache_repeat_rows_continues_each_prompt_in_its_own_rows():
    model = tiny_model(23)
    prompts = [torch.randint(3, 23, (n,)) for n in (4, 1, 3)]
    ids, mask = left_pad(prompts)
    G = 3
    extra = torch.randint(3, 23, (3 * G, 2))  # a different continuation in every row
    with torch.no_grad():
        cache = KVCache(TINY, 3, ids.shape[1])
        model(ids, attention_mask=mask, cache=cache)
        cache = cache.repeat_rows(G, ids.shape[1] + 2)
        got = torch.cat([model(extra[:, t : t + 1], cache=cache) for t in range(2)], dim=1)  # (3G, 2, V)
        for row in range(3 * G):
            alone = model(torch.cat([prompts[row // G], extra[row]])[None])[0, -2:]
            assert torch.allclose(got[row], alone, atol=1e-5), f"row {row}"


def test_forward_rejects_bad_input():
    model = GPT(TINY)
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask"):
        model(torch.zeros(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4))
    with pytest.raises(ValueError, match="idx"):
        model(torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="cache"):
        model(torch.zeros(1, 5, dtype=torch.long), cache=KVCache(TINY, 1, 4))
    with pytest.raises(ValueError, match="n_head"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="vocab_size"):
        GPTConfig(vocab_size=0)


@pytest.mark.parametrize("full_row", [True, False])
def test_skip_padding_gives_the_padded_numbers_forward_and_backward(full_row):
    # Left padding (prompts), right padding (finished completions), both, and none in one batch;
    # without the full row the packed attention grid is shorter than the batch (7 of 9 columns).
    model = tiny_model(24, value_head=True).train()
    ids = torch.randint(3, 23, (4, 9))
    mask = torch.ones(4, 9, dtype=torch.long)
    mask[0, :3] = 0
    mask[1, 6:] = 0
    mask[2, :1] = 0
    mask[2, 7:] = 0
    if not full_row:
        mask[3, :2] = 0
    probe = torch.randn(4, 9, 16) * mask[..., None]  # a loss on the real positions only

    def run(skip):
        model.zero_grad()
        h = model.hidden_states(ids, mask, skip_padding=skip)
        values = model.values(ids, mask, skip_padding=skip)
        ((h * probe).sum() + (values * mask).sum()).backward()
        return h, values, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    h, values, grads = run(True)
    h_ref, values_ref, grads_ref = run(False)
    real = mask.bool()
    torch.testing.assert_close(h[real], h_ref[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(values[real], values_ref[real], atol=1e-5, rtol=1e-5)
    assert (h[~real] == 0).all()  # pads are not computed at all
    assert len(grads) == len(grads_ref)
    for mine, reference in zip(grads, grads_ref):
        torch.testing.assert_close(mine, reference, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(model(ids, mask, skip_padding=True)[real], model(ids, mask)[real], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sequence_logprobs(model, ids, mask, skip_padding=True), sequence_logprobs(model, ids, mask),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cache"):
        model.hidden_states(ids, mask, cache=KVCache(TINY, 4, 9), skip_padding=True)


@pytest.mark.parametrize("skip", [False, True])
@pytest.mark.parametrize("padded", [False, True])
def test_keep_last_gives_the_last_positions_of_the_full_pass_forward_and_backward(skip, padded):
    model = tiny_model(24, value_head=True).train()
    ids = torch.randint(3, 23, (4, 9))
    mask = torch.ones(4, 9, dtype=torch.long)
    if padded:  # left padding, right padding reaching into the kept columns, a row with no kept real token
        mask[0, :3] = 0
        mask[1, 6:] = 0
        mask[2, :1] = 0
        mask[2, 7:] = 0
        mask[3, 4:] = 0
    K = 4
    probe = torch.randn(4, K, 16) * mask[:, -K:, None]  # a loss on the real kept positions

    def run(keep):
        model.zero_grad()
        h = model.hidden_states(ids, mask, skip_padding=skip, keep_last=keep)
        values = model.values(ids, mask, skip_padding=skip, keep_last=keep)
        logits = model(ids, mask, skip_padding=skip, keep_last=keep)
        if keep is None:
            h, values, logits = h[:, -K:], values[:, -K:], logits[:, -K:]
        ((h * probe).sum() + (values * mask[:, -K:]).sum() + (logits[..., 5] * mask[:, -K:]).sum()).backward()
        return h, values, logits, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    *kept, grads = run(K)
    *full, grads_ref = run(None)
    real = mask[:, -K:].bool()
    for mine, reference in zip(kept, full):
        assert mine.shape[:2] == (4, K)
        torch.testing.assert_close(mine[real], reference[real], atol=1e-5, rtol=1e-5)
    if skip:
        assert (kept[0][~real] == 0).all()  # a kept pad is not computed either
    assert len(grads) == len(grads_ref)
    for mine, reference in zip(grads, grads_ref):
        torch.testing.assert_close(mine, reference, atol=1e-5, rtol=1e-4)


def test_keep_last_refuses_bad_values():
    model = tiny_model(24)
    ids = torch.randint(3, 23, (2, 5))
    for bad in (0, 6, -1):
        with pytest.raises(ValueError, match="keep_last"):
            model.hidden_states(ids, keep_last=bad)
    with pytest.raises(ValueError, match="cache"):
        model.hidden_states(ids, cache=KVCache(TINY, 2, 9), keep_last=2)


def test_shared_prompt_states_equal_the_repeated_rows_forward_and_backward():
    # Reference: every prompt written out G times and concatenated with its continuation,
    # run through hidden_states like any padded batch.
    model = tiny_model(21).train()  # train mode: the path the GRPO update takes (dropout is 0)
    prompts = [torch.randint(3, 23, (n,)) for n in (5, 2, 3)]
    prompt_ids, prompt_mask = left_pad(prompts)
    G, T = 4, 5
    continuations = torch.randint(3, 23, (3 * G, T))
    real = torch.ones(3 * G, T, dtype=torch.long)
    real[1, 2:] = 0  # finished early: right padding
    real[7, 1:] = 0
    continuations = continuations * real
    P = prompt_ids.shape[1]

    last, states = model.shared_prompt_states(prompt_ids, prompt_mask, continuations, G)
    probe = torch.randn(states.shape[-1])  # a loss that reads every real position
    ((states * real[..., None]) @ probe).sum().add((last @ probe).sum() * G).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()

    ids = torch.cat([prompt_ids.repeat_interleave(G, 0), continuations], dim=1)
    mask = torch.cat([prompt_mask.repeat_interleave(G, 0), real], dim=1)
    full = model.hidden_states(ids, mask)
    torch.testing.assert_close(last.repeat_interleave(G, 0), full[:, P - 1], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(states * real[..., None], full[:, P:] * real[..., None], atol=1e-5, rtol=1e-5)
    ((full[:, P:] * real[..., None]) @ probe).sum().add((full[:, P - 1] @ probe).sum()).backward()
    for mine, reference in zip(grads, (p.grad for p in model.parameters())):
        torch.testing.assert_close(mine, reference, atol=1e-4, rtol=1e-4)


def test_shared_prompt_states_rejects_bad_shapes():
    model = tiny_model()
    ids, mask = left_pad([[3, 4], [5]])
    with pytest.raises(ValueError, match="continuations"):
        model.shared_prompt_states(ids, mask, torch.zeros(5, 3, dtype=torch.long), group_size=3)
    with pytest.raises(ValueError, match="prompt_mask"):
        model.shared_prompt_states(ids, mask[:, :1], torch.zeros(6, 3, dtype=torch.long), group_size=3)
    with pytest.raises(ValueError, match="left"):  # right-padded prompts would put a pad before the continuation
        model.shared_prompt_states(ids, mask.flip(1), torch.zeros(6, 3, dtype=torch.long), group_size=3)
    with pytest.raises(ValueError, match="block_size"):
        model.shared_prompt_states(ids, mask, torch.zeros(6, 31, dtype=torch.long), group_size=3)


# ---------------------------------------------------------------- generate
def _greedy_loop(model, prompt, n_new, eos_id):
    """One prompt, no padding, no cache: argmax of the last logits, append, repeat."""
    seq = list(prompt)
    out = []
    for _ in range(n_new):
        with torch.no_grad():
            token = int(model(torch.tensor([seq]))[0, -1].argmax())
        out.append(token)
        seq.append(token)
        if token == eos_id:
            break
    return out


@pytest.mark.parametrize("eos_id", [None, 5])
def test_greedy_with_cache_equals_greedy_without_and_the_loop(eos_id):
    model = tiny_model(4, scale=0.5)
    gen = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 23, (n,), generator=gen).tolist() for n in (1, 9, 4, 6, 2)]
    with_cache, mask_c = generate(model, prompts, 12, temperature=0.0, eos_id=eos_id)
    without, mask_n = generate(model, prompts, 12, temperature=0.0, eos_id=eos_id, use_cache=False)
    assert torch.equal(with_cache, without) and torch.equal(mask_c, mask_n)
    for b, p in enumerate(prompts):
        expected = _greedy_loop(model, p, 12, eos_id)
        n = int(mask_c[b].sum())
        assert with_cache[b, :n].tolist() == expected, f"prompt {b}"
        assert (with_cache[b, n:] == 0).all()


def test_generate_stops_each_sequence_at_its_own_eos():
    model = tiny_model(5, scale=0.6)
    prompts = [[1, 7, 8], [1, 3], [1, 9, 9, 9], [1]] * 8
    comp, mask = generate(model, prompts, 15, temperature=1.5, eos_id=4, generator=torch.Generator().manual_seed(0))
    assert comp.shape == mask.shape == (32, 15)
    n_finished = 0
    for row, m in zip(comp.tolist(), mask.tolist()):
        if 4 in row:
            first = row.index(4)
            assert m == [1] * (first + 1) + [0] * (15 - first - 1)  # EOS itself is an action: mask 1
            assert row[first + 1 :] == [0] * (15 - first - 1)
            n_finished += 1
        else:
            assert m == [1] * 15
    assert 0 < n_finished < 32  # the case is interesting: some stop early, some do not


def test_sampling_is_reproducible_with_a_generator():
    model = tiny_model(6)
    prompts = [[1, 4], [1, 5, 6]]
    a = generate(model, prompts, 8, generator=torch.Generator().manual_seed(3))
    b = generate(model, prompts, 8, generator=torch.Generator().manual_seed(3))
    c = generate(model, prompts, 8, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0])
    assert not torch.equal(a[0], c[0])


def test_sampled_tokens_follow_the_model_distribution():
    # The first sampled token of a prompt must be distributed as softmax(logits / T).
    model = tiny_model(7, scale=0.15)
    prompt = [1, 8, 9]
    with torch.no_grad():
        probs = torch.softmax(model(torch.tensor([prompt]))[0, -1] / 0.8, dim=-1)
    comp, _ = generate(model, [prompt] * 20000, 1, temperature=0.8, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(comp[:, 0], minlength=23).float() / 20000
    assert (freq - probs).abs().max() < 0.015


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no_cache"])
def test_generate_num_samples_draws_like_repeated_prompts(use_cache):
    model = tiny_model(22)
    prompts = [[3, 4, 5, 6], [7, 8], [9, 10, 11]]
    ids, mask = left_pad(prompts)
    G = 5
    got, got_mask = generate(model, ids, 7, attention_mask=mask, eos_id=2, num_samples=G, use_cache=use_cache,
                             generator=torch.Generator().manual_seed(3))
    want, want_mask = generate(model, ids.repeat_interleave(G, 0), 7, attention_mask=mask.repeat_interleave(G, 0), eos_id=2,
                               generator=torch.Generator().manual_seed(3))
    assert got.shape == (3 * G, 7)
    assert torch.equal(got, want) and torch.equal(got_mask, want_mask)
    assert len({tuple(r) for r in got[:G].tolist()}) > 1  # the G samples of a prompt differ: not one draw copied
    with pytest.raises(ValueError, match="num_samples"):
        generate(model, ids, 3, attention_mask=mask, num_samples=0)


@pytest.mark.parametrize("use_cache", [True, False], ids=["cache", "no_cache"])
@pytest.mark.parametrize("temperature", [1.5, 0.8])
def test_generate_returns_the_logprob_and_entropy_of_each_draw(use_cache, temperature):
    model = tiny_model(23, scale=0.6)
    prompts = [[1, 7, 8], [1, 3], [1, 9, 9, 9], [1]] * 6
    kwargs = dict(temperature=temperature, eos_id=4, use_cache=use_cache)
    comp, mask, logp, ent = generate(model, prompts, 9, generator=torch.Generator().manual_seed(1), return_logprobs=True,
                                     **kwargs)
    same, same_mask = generate(model, prompts, 9, generator=torch.Generator().manual_seed(1), **kwargs)
    assert torch.equal(comp, same) and torch.equal(mask, same_mask)  # asking for log-probs changes no draw
    assert 0 < int(mask.sum()) < mask.numel()  # some rows stop early
    for b, prompt in enumerate(prompts):
        for t in range(9):
            if not mask[b, t]:
                assert logp[b, t] == 0 and ent[b, t] == 0
                continue
            # plain reference: the unpadded sequence so far, no cache, the last position's logits
            seq = torch.tensor([prompt + comp[b, :t].tolist()])
            with torch.no_grad():
                p_ref = torch.softmax(model(seq)[0, -1].double() / temperature, dim=-1)
            assert logp[b, t].item() == pytest.approx(math.log(p_ref[comp[b, t]]), abs=1e-5)
            assert ent[b, t].item() == pytest.approx(-float((p_ref * p_ref.log()).sum()), abs=1e-5)


@pytest.mark.parametrize("num_samples", [1, 3])
def test_finished_rows_leave_the_cache_without_changing_any_draw(monkeypatch, num_samples):
    import course_lib.gpt as gpt

    model = tiny_model(25, scale=0.6)
    ids, mask = left_pad([[1, 7, 8], [1, 3], [1, 9, 9, 9], [1], [1, 5]] * 4)
    kwargs = dict(temperature=1.5, eos_id=4, attention_mask=mask, num_samples=num_samples, return_logprobs=True)
    selected = []
    real_select = gpt.KVCache.select_rows
    monkeypatch.setattr(gpt.KVCache, "select_rows", lambda self, rows: selected.append(len(rows)) or real_select(self, rows))
    got = generate(model, ids, 12, generator=torch.Generator().manual_seed(2), **kwargs)
    assert len(selected) >= 2 and selected == sorted(selected, reverse=True)  # rows left the cache, twice or more
    monkeypatch.setattr(gpt, "COMPACT_AT", None)
    selected.clear()
    want = generate(model, ids, 12, generator=torch.Generator().manual_seed(2), **kwargs)
    assert selected == []
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    torch.testing.assert_close(got[2], want[2], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got[3], want[3], atol=1e-5, rtol=1e-5)


def test_kv_cache_select_rows_continues_like_a_cache_of_those_rows():
    model = tiny_model(26)
    ids, mask = left_pad([[1, 7, 8, 2], [1, 3], [5, 9, 9], [1]])
    rows = torch.tensor([3, 1])
    with torch.no_grad():
        full = KVCache(TINY, 4, 8)
        model.hidden_states(ids, mask, cache=full)
        part = KVCache(TINY, 2, 8)
        model.hidden_states(ids[rows], mask[rows], cache=part)
        nxt = torch.tensor([[6], [11]])
        got = model.hidden_states(nxt, cache=full.select_rows(rows))
        want = model.hidden_states(nxt, cache=part)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_generate_refuses_logprobs_of_a_sampler_that_is_not_pi():
    model = tiny_model(24)
    for kwargs in (dict(temperature=0.0), dict(top_k=3)):
        with pytest.raises(ValueError, match="return_logprobs"):
            generate(model, [[1, 2]], 3, return_logprobs=True, **kwargs)


def test_generate_accepts_a_padded_tensor_and_restores_training_mode():
    model = tiny_model(8)
    prompts = [[1, 2, 3, 4], [1, 6]]
    ids, mask = left_pad(prompts)
    model.train()
    a, _ = generate(model, ids, 6, temperature=0.0, attention_mask=mask)
    assert model.training
    b, _ = generate(model, prompts, 6, temperature=0.0)
    assert torch.equal(a, b)


def test_generate_rejects_bad_input():
    model = GPT(TINY)
    with pytest.raises(ValueError, match="block_size"):
        generate(model, [[1] * 30], 5)
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate(model, [[1]], 0)
    with pytest.raises(ValueError, match="attention_mask"):
        generate(model, torch.ones(2, 3, dtype=torch.long), 2, attention_mask=torch.ones(2, 2))
    with pytest.raises(ValueError, match="token"):
        generate(model, [[1], []], 2)


def test_left_pad():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(ValueError, match="sequences"):
        left_pad([])


# ---------------------------------------------------------------- kernels on logits
def test_token_logprobs_against_log_softmax_loop():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 5, 11, generator=gen) * 4
    targets = torch.randint(0, 11, (3, 5), generator=gen)
    got = token_logprobs(logits, targets)
    for b in range(3):
        for t in range(5):
            z = logits[b, t]
            expected = z[targets[b, t]].item() - math.log(sum(math.exp(v) for v in z.tolist()))
            assert got[b, t].item() == pytest.approx(expected, abs=1e-5)
    # Same gradient as the textbook formula.
    x = logits.clone().requires_grad_(True)
    token_logprobs(x, targets).sum().backward()
    y = logits.clone().requires_grad_(True)
    torch.log_softmax(y, -1).gather(-1, targets[..., None]).sum().backward()
    assert torch.allclose(x.grad, y.grad, atol=1e-6)


def test_token_logprobs_worked_example_and_errors():
    got = token_logprobs(torch.tensor([[0.0, math.log(3.0)]]), torch.tensor([1]))
    assert got.item() == pytest.approx(math.log(0.75))
    with pytest.raises(ValueError, match="targets"):
        token_logprobs(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_entropy_from_logits_against_loop():
    logits = torch.randn(4, 7, generator=torch.Generator().manual_seed(1)) * 3
    got = entropy_from_logits(logits)
    for b in range(4):
        p = [math.exp(v) for v in logits[b].tolist()]
        p = [v / sum(p) for v in p]
        assert got[b].item() == pytest.approx(-sum(v * math.log(v) for v in p), abs=1e-5)
    assert entropy_from_logits(torch.zeros(4)).item() == pytest.approx(math.log(4))
    assert entropy_from_logits(torch.tensor([0.0, -1e9])).item() == pytest.approx(0.0, abs=1e-6)


def _sequence_logprobs_loop(model, ids, mask):
    """Each scored token separately: run the model on the real tokens before it."""
    B, T = ids.shape
    out = torch.zeros(B, T)
    for b in range(B):
        for t in range(1, T):
            if not (mask[b, t] and mask[b, t - 1]):
                continue
            prefix = ids[b, :t][mask[b, :t].bool()]
            with torch.no_grad():
                logp = torch.log_softmax(model(prefix[None])[0, -1], dim=-1)
            out[b, t] = logp[ids[b, t]]
    return out


@pytest.mark.parametrize("layout", ["none", "right", "left", "both"])
def test_sequence_logprobs_against_the_loop(layout):
    model = tiny_model(9)
    gen = torch.Generator().manual_seed(5)
    ids = torch.randint(3, 23, (4, 9), generator=gen)
    mask = torch.ones(4, 9, dtype=torch.long)
    if layout in ("right", "both"):
        mask[1, 6:] = 0
        mask[3, 2:] = 0
    if layout in ("left", "both"):
        mask[0, :3] = 0
        mask[2, :8] = 0  # a single real token: nothing to score
    ids = ids * mask  # pads hold id 0
    with torch.no_grad():
        got = sequence_logprobs(model, ids, mask)
    assert got.shape == (4, 9)
    assert torch.allclose(got, _sequence_logprobs_loop(model, ids, mask), atol=1e-5)
    assert (got[~mask.bool()] == 0).all() and (got[:, 0] == 0).all()


def test_sequence_logprobs_without_mask_and_errors():
    model = tiny_model(10)
    ids = torch.randint(0, 23, (2, 6))
    with torch.no_grad():
        assert torch.allclose(sequence_logprobs(model, ids), _sequence_logprobs_loop(model, ids, torch.ones_like(ids)), atol=1e-5)
    with pytest.raises(ValueError, match="attention_mask"):
        sequence_logprobs(model, ids, torch.ones(2, 5))
    with pytest.raises(ValueError, match="input_ids"):
        sequence_logprobs(model, ids[0])


def test_sequence_logprobs_sum_to_the_log_probability_of_a_sample():
    # The chain rule: log pi(completion | prompt) = sum of the token log-probs of the completion.
    model = tiny_model(11, scale=0.2)
    prompt = [1, 5, 6, 7]
    comp, cmask = generate(model, [prompt], 5, generator=torch.Generator().manual_seed(0))
    ids = torch.cat([torch.tensor([prompt]), comp], dim=1)
    with torch.no_grad():
        total = sequence_logprobs(model, ids, torch.ones_like(ids))[0, len(prompt):].sum().item()
        expected = 0.0
        for t, token in enumerate(comp[0].tolist()):
            probs = torch.softmax(model(ids[:, : len(prompt) + t])[0, -1], -1)
            expected += math.log(probs[token].item())
    assert total == pytest.approx(expected, abs=1e-4)


# ---------------------------------------------------------------- sample_next_token
def test_sample_next_token_greedy_and_top1():
    logits = torch.randn(50, 9, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample_next_token(logits, temperature=0.0), logits.argmax(-1))
    assert torch.equal(sample_next_token(logits, temperature=1.0, top_k=1), logits.argmax(-1))


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.5, None), (2.0, None), (1.0, 3), (0.7, 2)])
def test_sample_next_token_frequencies(temperature, top_k):
    base = torch.tensor([2.0, 1.0, 0.0, -0.5, 1.5])
    n = 40000
    draws = sample_next_token(base.expand(n, 5), temperature, top_k, torch.Generator().manual_seed(1))
    freq = torch.bincount(draws, minlength=5).float() / n
    z = (base / temperature).tolist()
    keep = sorted(range(5), key=lambda i: -z[i])[: top_k or 5]
    w = [math.exp(z[i]) if i in keep else 0.0 for i in range(5)]
    expected = torch.tensor([v / sum(w) for v in w])
    assert (freq - expected).abs().max() < 0.012
    assert (freq[expected == 0] == 0).all()


def test_sample_next_token_worked_example_and_errors():
    p = torch.softmax(torch.tensor([2.0, 1.0, 0.0]), -1)
    assert p.tolist() == pytest.approx([0.665, 0.245, 0.090], abs=1e-3)
    with pytest.raises(ValueError, match="temperature"):
        sample_next_token(torch.zeros(1, 3), temperature=-1.0)
    with pytest.raises(ValueError, match="top_k"):
        sample_next_token(torch.zeros(1, 3), top_k=0)
    with pytest.raises(ValueError, match="logits"):
        sample_next_token(torch.zeros(3))


# ---------------------------------------------------------------- the value head
def test_value_head():
    model = tiny_model(12, value_head=True)
    idx = torch.randint(0, 23, (2, 7))
    mask = torch.ones_like(idx)
    mask[1, :3] = 0
    with torch.no_grad():
        v = model.values(idx, mask)
        logits, v2 = model.logits_and_values(idx, mask)
        assert v.shape == (2, 7)
        assert torch.allclose(v, v2) and torch.allclose(logits, model(idx, mask))
        h = model.hidden_states(idx, mask)
        assert torch.allclose(v, h @ model.value_head.weight[0] + model.value_head.bias, atol=1e-6)
    with pytest.raises(ValueError, match="value head"):
        tiny_model(12).values(idx)


def test_with_value_head_copies_the_policy_and_starts_at_zero():
    policy = tiny_model(13)
    critic = with_value_head(policy)
    idx = torch.randint(0, 23, (3, 5))
    with torch.no_grad():
        assert torch.allclose(critic(idx), policy(idx))
        assert (critic.values(idx) == 0).all()
        critic.transformer.wte.weight.add_(1.0)  # training the critic must not move the policy
        assert not torch.allclose(critic(idx), policy(idx))
    assert critic.lm_head.weight is critic.transformer.wte.weight


# ---------------------------------------------------------------- the sparse reward
def _reward_at_end_loop(rewards, mask):
    out = torch.zeros(mask.shape)
    for b in range(mask.shape[0]):
        real = [t for t in range(mask.shape[1]) if mask[b, t]]
        if real:
            out[b, real[-1]] = rewards[b]
    return out


def test_reward_at_end_against_the_loop():
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([5, 1, 0, 3, 5])
    mask = (torch.arange(5)[None, :] < lengths[:, None]).long()
    rewards = torch.randn(5, generator=gen)
    assert torch.equal(reward_at_end(rewards, mask), _reward_at_end_loop(rewards, mask))
    worked = reward_at_end(torch.tensor([1.0, -2.0]), torch.tensor([[1, 1, 1], [1, 0, 0]]))
    assert worked.tolist() == [[0, 0, 1], [-2, 0, 0]]
    with pytest.raises(ValueError, match="rewards"):
        reward_at_end(torch.zeros(3), torch.ones(2, 4))
