"""course_lib.pretrain: the loss, the schedule, and the checkpoint cache (on tiny configs, so it stays cheap)."""

from __future__ import annotations

import math
import multiprocessing
from dataclasses import replace

import pytest
import torch

from course_lib import pretrain as P
from course_lib.gpt import GPT
from course_lib.tokenizer import CharTokenizer

TINY = P.PretrainConfig(n_layer=1, n_head=2, n_embd=32, block_size=48, steps=40, batch_size=16,
                        lr=1e-2, warmup_steps=5, seed=3)


def test_lm_loss_against_a_loop():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 9, (3, 6), generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 0, 0, 0, 0]])
    logits = torch.randn(3, 5, 9, generator=gen)
    total, n = 0.0, 0
    for b in range(3):
        for t in range(1, 6):
            if mask[b, t]:
                z = logits[b, t - 1]
                total -= z[ids[b, t]].item() - math.log(sum(math.exp(v) for v in z.tolist()))
                n += 1
    assert P.lm_loss(logits, ids, mask).item() == pytest.approx(total / n, rel=1e-5)


def test_batch_from_documents():
    tok = CharTokenizer()
    ids, mask = P.batch_from_documents(["1+1=2", "10+10=20"], tok)
    assert ids.shape == (2, 10)
    assert ids[0].tolist() == tok.encode("1+1=2", eos=True) + [0, 0, 0]
    assert mask.tolist() == [[1] * 7 + [0] * 3, [1] * 10]


def test_lr_schedule():
    cfg = replace(TINY, steps=100, warmup_steps=10, lr=1.0, min_lr_ratio=0.1)
    assert P.lr_at(0, cfg) == pytest.approx(0.1)
    assert P.lr_at(9, cfg) == pytest.approx(1.0)
    assert P.lr_at(10, cfg) == pytest.approx(1.0)
    assert P.lr_at(55, cfg) == pytest.approx(0.55)  # half-way down the cosine: (1 + 0.1) / 2
    assert P.lr_at(100, cfg) == pytest.approx(0.1)
    lrs = [P.lr_at(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_cache_key_changes_with_every_field():
    key = P.cache_key(TINY)
    assert key == P.cache_key(replace(TINY))
    for field, value in [("seed", 4), ("steps", 41), ("n_embd", 64), ("lr", 2e-2), ("arithmetic_weight", 0.5), ("carry_slip", 0.1)]:
        assert P.cache_key(replace(TINY, **{field: value})) != key, field


def test_cache_dir_honours_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(P.CACHE_ENV, str(tmp_path / "here"))
    assert P.cache_dir() == tmp_path / "here"
    monkeypatch.delenv(P.CACHE_ENV)
    assert P.cache_dir().parts[-2:] == (".cache", "rl-course")


def test_configs():
    assert P.base_config(fast=True).steps < P.base_config(fast=False).steps
    with pytest.raises(ValueError, match="steps"):
        P.PretrainConfig(steps=0)
    with pytest.raises(ValueError, match="arithmetic_weight"):
        P.PretrainConfig(arithmetic_weight=1.5)
    with pytest.raises(ValueError, match="carry_slip"):
        P.PretrainConfig(carry_slip=-0.1)
    full, fast = P.base_config(fast=False), P.base_config(fast=True)
    assert P.make_tasks(full)[0].carry_slip == full.carry_slip > 0  # the full base reads the careless corpus
    assert fast.carry_slip == 0 and fast.target_accuracy is not None  # the fast one: clean sums, stopped early


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    model, record = P.load_or_pretrain(TINY, directory=folder, progress=False)
    return folder, model, record


def test_pretraining_lowers_the_loss(trained):
    _, model, record = trained
    loss = record["loss"]
    assert len(loss) == TINY.steps and not record["cached"]
    # A fresh model starts near ln V (uniform guessing); 40 steps must cut that clearly.
    assert loss[0] == pytest.approx(math.log(CharTokenizer().vocab_size), abs=0.3)
    assert sum(loss[-5:]) / 5 < 0.75 * loss[0]
    assert record["cpu_seconds"] > 0 and 0.0 <= record["heldout_accuracy"] <= 1.0
    assert not model.training


def test_the_cache_returns_the_same_model(trained, monkeypatch):
    folder, model, record = trained
    monkeypatch.setattr(P, "pretrain", lambda *a, **k: pytest.fail("pretrained again instead of loading"))
    again, rec2 = P.load_or_pretrain(TINY, directory=folder)
    assert rec2["cached"] and rec2["loss"] == record["loss"]
    idx = torch.randint(0, 40, (2, 8))
    with torch.no_grad():
        assert torch.equal(again(idx), model(idx))
    assert again.lm_head.weight is again.transformer.wte.weight
    # The checkpoint, its record, and the (empty) lock file that kept other processes waiting.
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"base-{P.cache_key(TINY)}.{ext}" for ext in ("json", "safetensors", "lock")])


def test_pretraining_is_deterministic(trained):
    _, model, _ = trained
    again, _ = P.pretrain(replace(TINY, steps=TINY.steps), progress=False)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_pretraining_stops_at_the_target_accuracy():
    # Any accuracy reaches a target of 0: the first check (step 10) ends the run.
    model, history = P.pretrain(replace(TINY, eval_every=10, target_accuracy=0.0, n_validation=8), progress=False)
    assert len(history["loss"]) == 10
    assert [step for step, _ in history["validation"]] == [10]
    # An unreachable target: every check runs and so does every step.
    _, history = P.pretrain(replace(TINY, steps=20, eval_every=10, target_accuracy=1.01, n_validation=8), progress=False)
    assert len(history["loss"]) == 20 and [s for s, _ in history["validation"]] == [10, 20]


def test_greedy_accuracy_counts_exact_answers():
    # A model that always says "<eos>" at once answers nothing right.
    tok = CharTokenizer()
    model = GPT(P.model_config(TINY, tok))
    with torch.no_grad():
        model.transformer.wte.weight.zero_()
        model.transformer.wte.weight[tok.eos_id, 0] = 1.0
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
    task, _ = P.make_tasks(TINY)
    assert P.greedy_accuracy(model, task, n=20) == 0.0


def _load_in_a_subprocess(folder, queue):
    torch.set_num_threads(1)
    _, record = P.load_or_pretrain(replace(TINY, steps=10, seed=5), directory=folder, progress=False)
    queue.put(record["cached"])


def test_two_processes_needing_the_same_checkpoint_train_it_once(tmp_path):
    # The lock makes the second process wait, then load what the first one saved.
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_load_in_a_subprocess, args=(tmp_path, queue)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=300)
        assert w.exitcode == 0
    assert sorted(queue.get(timeout=5) for _ in workers) == [False, True]


def test_cache_lock_excludes_a_second_holder(tmp_path):
    import fcntl

    lock = tmp_path / "x.lock"
    with P.cache_lock(lock):
        with open(lock, "a") as other:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock, "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again once the block ends
