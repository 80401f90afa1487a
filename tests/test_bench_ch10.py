"""Smoke tests for benchmarks/bench_ch10_sampling.py on tiny sizes, so the script cannot rot.

The script is loaded from its path (it is not part of the installed package).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from course_lib.gpt import GPT, GPTConfig

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_ch10_sampling.py"


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("transformers")
    spec = importlib.util.spec_from_file_location("bench_ch10_sampling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_to_transformers_gives_the_same_logits(bench):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=17, block_size=12, n_layer=2, n_head=2, n_embd=8)).eval()
    hf = bench.to_transformers(model)
    idx = torch.randint(0, 17, (2, 12))
    with torch.no_grad():
        assert torch.allclose(hf(idx).logits, model(idx), atol=1e-5)


def test_bench_model_tiny(bench):
    row = bench.bench_model("tiny", GPTConfig(vocab_size=17, block_size=24, n_layer=1, n_head=2, n_embd=8),
                            batch=3, new_tokens=4, repeats=1, device="cpu")
    assert row["same_tokens_as_hf"] and row["same_tokens_without_cache"]
    assert row["cache_tok_s"] > 0 and row["hf_tok_s"] > 0 and row["no_cache_tok_s"] > 0
    assert "tiny" in bench.format_table([row], "cpu", 1)


def test_main_end_to_end_and_arguments(bench, capsys):
    rows = bench.main(["--models", "small", "--batch", "2", "--new-tokens", "2", "--repeats", "1", "--skip-no-cache"])
    assert rows[0]["model"] == "small" and "no_cache_tok_s" not in rows[0]
    assert "transformers" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0"])
