"""benchmarks/trl_bridge.py: our models and tokenizer in Hugging Face shapes give the same numbers.

Runs in the course environment (transformers is in the test extra); TRL is never
imported here. The reward check re-reads the score the way
``trl.experimental.ppo``'s ``get_reward`` does (trunk via ``base_model_prefix``,
``model.score`` on the last hidden state, read at the last response token before
the first pad, with position ids counting real tokens), written out in this file.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from course_lib.gpt import GPT, GPTConfig, left_pad, with_value_head
from course_lib.tokenizer import CharTokenizer

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "trl_bridge.py"
TEXTS = ["12+3=", "the soup was great and warm.", "a", "999+1=1000", "the view was nice, quiet!?"]


@pytest.fixture(scope="module")
def bridge():
    pytest.importorskip("transformers")
    pytest.importorskip("tokenizers")
    spec = importlib.util.spec_from_file_location("trl_bridge", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_model(value_head=False, seed=0, vocab_size=None):
    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=vocab_size or CharTokenizer().vocab_size, block_size=40, n_layer=2, n_head=2, n_embd=16)
    model = GPT(config, value_head=value_head)
    with torch.no_grad():  # non-zero everywhere, so a dropped bias or a wrong head shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def padded_batch(tokenizer=None):
    """Left-padded prompts followed by right-padded responses, as TRL's PPO lays them out."""
    tokenizer = tokenizer or CharTokenizer()
    ids, mask = left_pad([tokenizer.encode(t) for t in ["1+2=", "the soup was", "77+5="]], tokenizer.pad_id)
    responses = torch.tensor([[7, 2, 0, 0, 0], [43, 20, 17, 2, 0], [4, 5, 6, 7, 8]])  # eos = 2, pad = 0 after it
    return torch.cat([ids, responses], dim=1), ids.shape[1]


def trl_style_forward_inputs(query_responses, pad_id=0):
    # TRL: attention_mask = ids != pad; position_ids = exclusive cumsum of the mask.
    attention_mask = query_responses != pad_id
    position_ids = attention_mask.cumsum(1) - attention_mask.long()
    return query_responses.masked_fill(~attention_mask, 0), attention_mask, position_ids


# ---------------------------------------------------------------- the language model
def test_causal_lm_logits_equal_unpadded(bridge):
    model = tiny_model()
    hf = bridge.to_causal_lm(model)
    idx = torch.randint(0, model.config.vocab_size, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx), atol=1e-5, rtol=0)


def test_causal_lm_logits_equal_with_trl_padding(bridge):
    model = tiny_model(seed=3)
    hf = bridge.to_causal_lm(model)
    query_responses, _ = padded_batch()
    ids, att, pos = trl_style_forward_inputs(query_responses)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=att, position_ids=pos).logits
        ours = model(query_responses, attention_mask=att.long())
    real = att.bool()
    torch.testing.assert_close(theirs[real], ours[real], atol=1e-5, rtol=0)


def test_causal_lm_is_tied_fp32_and_without_dropout(bridge):
    hf = bridge.to_causal_lm(tiny_model())
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()
    assert all(p.dtype == torch.float32 for p in hf.parameters())
    assert hf.config.resid_pdrop == hf.config.embd_pdrop == hf.config.attn_pdrop == 0.0
    assert (hf.generation_config.pad_token_id, hf.generation_config.eos_token_id) == (0, 2)


def test_causal_lm_weights_are_a_copy(bridge):
    model = tiny_model()
    hf = bridge.to_causal_lm(model)
    with torch.no_grad():
        hf.transformer.h[0].attn.c_attn.weight.add_(1.0)
    assert not torch.equal(hf.transformer.h[0].attn.c_attn.weight, model.transformer.h[0].attn.c_attn.weight)


def test_greedy_generation_gives_the_same_tokens(bridge):
    from course_lib.gpt import generate

    model = tiny_model(seed=5)
    hf = bridge.to_causal_lm(model)
    tok = CharTokenizer()
    ids, mask = left_pad([tok.encode(t) for t in ["1+2=", "the soup was"]], tok.pad_id)
    ours, _ = generate(model, ids, 6, temperature=0.0, attention_mask=mask)
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, min_new_tokens=6, do_sample=False,
                          pad_token_id=0, eos_token_id=None)
    assert torch.equal(out[:, ids.shape[1]:], ours)


# ---------------------------------------------------------------- the score models
def trl_get_reward(model, query_responses, pad_token_id, context_length):
    """TRL 1.12's ``trl.experimental.utils.get_reward``, restated: (per-position logits, final reward)."""
    ids, att, pos = trl_style_forward_inputs(query_responses, pad_token_id)
    trunk = getattr(model, model.base_model_prefix)
    out = trunk(input_ids=ids, attention_mask=att, position_ids=pos, return_dict=True, output_hidden_states=True,
                use_cache=False)
    logits = model.score(out.hidden_states[-1])  # (B, T, 1)
    is_pad = query_responses[:, context_length:] == pad_token_id
    first_pad = torch.where(is_pad.any(1), is_pad.float().argmax(1), torch.full_like(is_pad[:, 0], is_pad.shape[1], dtype=torch.long))
    last = first_pad - 1 + context_length
    return logits, logits[torch.arange(len(logits)), last].squeeze(-1)


def test_score_model_matches_our_values_everywhere(bridge):
    model = tiny_model(value_head=True, seed=7)
    hf = bridge.to_score_model(model)
    query_responses, P = padded_batch()
    logits, _ = trl_get_reward(hf, query_responses, 0, P)
    with torch.no_grad():
        ours = model.values(query_responses, attention_mask=(query_responses != 0).long())
    real = query_responses != 0
    torch.testing.assert_close(logits.squeeze(-1)[real], ours[real], atol=1e-5, rtol=0)


def test_score_model_keeps_the_value_head_bias(bridge):
    model = tiny_model(value_head=True)
    with torch.no_grad():
        model.value_head.bias.fill_(3.25)
    hf = bridge.to_score_model(model)
    assert hf.score.bias is not None and float(hf.score.bias.detach()) == 3.25
    torch.testing.assert_close(hf.score.weight, model.value_head.weight)


def test_reward_equals_course_last_token_scores(bridge):
    reward = pytest.importorskip("course_lib.reward")
    model = tiny_model(value_head=True, seed=11)
    hf = bridge.to_score_model(model)
    query_responses, P = padded_batch()
    _, theirs = trl_get_reward(hf, query_responses, 0, P)
    with torch.no_grad():
        ours = reward.last_token_scores(model, query_responses, (query_responses != 0).long())
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    # and by hand: the last real token of each row is the eos (rows 0, 1) or the final column (row 2)
    with torch.no_grad():
        values = model.values(query_responses, attention_mask=(query_responses != 0).long())
    expected = torch.stack([values[0, P + 1], values[1, P + 3], values[2, -1]])
    torch.testing.assert_close(theirs, expected, atol=1e-5, rtol=0)


def test_reward_fn_of_texts_equals_trl_score(bridge):
    reward = pytest.importorskip("course_lib.reward")
    tok = CharTokenizer()
    model = tiny_model(value_head=True, seed=13)
    hf = bridge.to_score_model(model)
    prompts, completions = ["the soup was", "1+2="], [" great.", "3"]
    ours = reward.reward_fn(model)(prompts, completions)
    # TRL's layout: left-padded query, then the response ending in eos
    q, _ = left_pad([tok.encode(p) for p in prompts], tok.pad_id)
    r, _ = left_pad([tok.encode(c, bos=False, eos=True) for c in completions], tok.pad_id)
    r = torch.stack([torch.cat([row[row != 0], row[row == 0]]) for row in r])  # right-pad the responses
    _, theirs = trl_get_reward(hf, torch.cat([q, r], 1), 0, q.shape[1])
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)


def test_critic_with_fresh_head_scores_zero(bridge):
    critic = with_value_head(tiny_model())
    hf = bridge.to_score_model(critic)
    query_responses, P = padded_batch()
    logits, _ = trl_get_reward(hf, query_responses, 0, P)
    assert torch.count_nonzero(logits) == 0


def test_score_model_rejects_a_model_without_value_head(bridge):
    with pytest.raises(ValueError, match="value head"):
        bridge.to_score_model(tiny_model())


# ---------------------------------------------------------------- the tokenizer
@pytest.mark.parametrize("text", TEXTS)
def test_tokenizer_ids_equal(bridge, text):
    ours = CharTokenizer()
    hf = bridge.hf_tokenizer(ours)
    assert hf(text)["input_ids"] == ours.encode(text)
    assert hf(text, add_special_tokens=False)["input_ids"] == ours.encode(text, bos=False)


def test_tokenizer_batch_is_left_padded_like_ours(bridge):
    ours = CharTokenizer()
    hf = bridge.hf_tokenizer(ours)
    batch = hf(TEXTS, padding=True, return_tensors="pt")
    ids, mask = ours.encode_batch(TEXTS)
    assert torch.equal(batch["input_ids"], ids) and torch.equal(batch["attention_mask"], mask)


def test_tokenizer_special_ids_and_decode(bridge):
    ours = CharTokenizer()
    hf = bridge.hf_tokenizer(ours)
    assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) == (ours.pad_id, ours.bos_id, ours.eos_id)
    ids = ours.encode("12+3=5", eos=True) + [0, 0]
    assert hf.decode(ids, skip_special_tokens=True) == ours.decode(ids) == "12+3=5"
    for text in TEXTS:
        assert hf.decode(ours.encode(text), skip_special_tokens=True) == text


def test_wide_tokenizer_drops_filler_ids_in_both(bridge):
    wide = bridge.WideCharTokenizer(200)
    hf = bridge.hf_tokenizer(wide)
    assert wide.vocab_size == 200 and len(hf) == 200
    ids = [1, 4, 150, 5, 199, 13, 6, 2, 77]
    assert wide.decode(ids) == hf.decode(ids[:-2], skip_special_tokens=True) == "12+3"
    assert hf("1+2=")["input_ids"] == wide.encode("1+2=") == CharTokenizer().encode("1+2=")
    with pytest.raises(ValueError):
        wide.decode([200])
    with pytest.raises(ValueError):
        bridge.WideCharTokenizer(10)


# ---------------------------------------------------------------- the benchmark scripts outside their venv
@pytest.mark.parametrize("script", ["bench_ch12_ppo_vs_trl.py", "bench_ch13_grpo_vs_trl.py"])
def test_benchmarks_refuse_to_run_without_trl(script):
    # CI never installs TRL: the scripts must stop at once and say how to set it up.
    import subprocess
    import sys

    if importlib.util.find_spec("trl") is not None:
        pytest.skip("TRL is installed here; this checks the message shown where it is not")
    path = SCRIPT.parent / script
    done = subprocess.run([sys.executable, str(path), "--quick"], capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "trl_setup.sh" in done.stderr and "build/trl-venv/bin/python" in done.stderr


def test_memory_readings(bridge):
    now, peak = bridge.rss_mb(), bridge.peak_rss_mb()
    assert 1 < now <= peak + 1  # MiB; the peak so far is at least the current resident size


# ---------------------------------------------------------------- the side-by-side report
def test_report_helpers_skip_the_warm_up_and_line_up_runs_of_different_lengths(bridge):
    ours = {"seconds": [9.0, 1.0, 3.0, 2.0], "cpu_seconds": [9.0, 1.0, 1.0, 4.0], "reward": [0.1, 0.2, 0.3, 0.4],
            "kl": [0.0, 0.1, 0.2, 0.3], "peak_rss_mb": 300.0, "rss_before_mb": 100.0}
    theirs = {"seconds": [9.0, 4.0, 6.0], "cpu_seconds": [9.0, 2.0, 2.0], "reward": [0.5, 0.6, 0.7], "kl": [0.0, 1.0, 2.0],
              "peak_rss_mb": 600.0, "rss_before_mb": 200.0}
    a, b = bridge.step_medians(ours), bridge.step_medians(theirs)
    assert (a["median_s"], a["median_cpu_s"], b["median_s"]) == (2.0, 1.0, 5.0)  # the 9 s warm-up is left out
    assert bridge.step_medians({**ours, "seconds": [7.0], "cpu_seconds": [7.0]})["median_s"] == 7.0  # unless it is all there is
    assert bridge.speedup_line(a, b) == "speed-up TRL / ours: wall 2.50x, CPU 2.00x;   peak RSS ours / TRL: 0.50"
    table = bridge.per_step_table(ours, theirs, ".2f", ".1f", kl_width=8)
    assert len(table) == 1 + 4 and table[0].split() == ["step", "reward", "ours", "reward", "TRL", "KL", "ours", "KL", "TRL",
                                                        "s", "ours", "s", "TRL"]
    assert table[3].split() == ["2", "0.30", "0.70", "0.2", "2.0", "3.00", "6.00"]
    assert table[4].split() == ["3", "0.40", "-", "0.3", "-", "2.00", "-"]  # TRL's shorter run: dashes


def test_pooled_rounds_drop_every_warm_up_and_keep_the_first_run(bridge):
    first = {"seconds": [9.0, 1.0, 3.0], "cpu_seconds": [8.0, 1.0, 2.0], "reward": [0.1, 0.2, 0.3], "peak_rss_mb": 300.0}
    second = {"seconds": [7.0, 5.0, 6.0], "cpu_seconds": [6.0, 4.0, 4.0], "reward": [0.1, 0.2, 0.3], "peak_rss_mb": 350.0}
    pooled = bridge.pool_rounds([first, second])
    assert pooled["seconds"] == [9.0, 1.0, 3.0, 5.0, 6.0] and pooled["cpu_seconds"] == [8.0, 1.0, 2.0, 4.0, 4.0]
    assert pooled["reward"] == first["reward"] and pooled["peak_rss_mb"] == 350.0
    assert bridge.step_medians({**pooled, "rss_before_mb": 1.0})["median_s"] == 4.0  # of 1, 3, 5, 6
    assert bridge.pool_rounds([first]) == first
    with pytest.raises(ValueError, match="runs"):
        bridge.pool_rounds([])

