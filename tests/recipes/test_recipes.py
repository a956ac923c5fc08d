"""Every recipe, run through ``mmseq train`` exactly as its README says, at tiny size on learnable micro data, with
thresholds a broken recipe would miss (chance is 1/3 for speakers and intents, under 0.4 for phones)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

import mmseq
from mmseq.cli import main
from mmseq.tasks import build_task
from mmseq.train.loop import evaluate, load_run_config

ROOT = Path(__file__).resolve().parents[2]
TERA = ROOT / "recipes" / "tera"
QUICK = ["trainer.progress=false", "trainer.batch_size=8", "schedule.warmup_steps=10"]
TINY_TERA = ["model_args.dim=32", "model_args.heads=2", "model_args.ffn_dim=64", "model_args.layers=2"]
PROBE = {"phone": ["model_args.num_classes=4"],
         "speaker": ["model_args.num_classes=3", "model_args.hidden_dim=32"],
         "intent": ["model_args.num_classes=3", "model_args.hidden_dim=32"]}


def summary(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


@pytest.mark.slow
def test_sequence_reversal_quick_start_reaches_the_readme_accuracy(tmp_path):
    # The README's quick start, unchanged but for the output folder. Seeded; the exact figures move a little
    # between CPU types (float rounding), so the bar is a little under the README's numbers.
    assert main(["train", str(ROOT / "recipes/core/sequence_reversal/configs/default.yaml"),
                 f"trainer.out_dir={tmp_path}", "trainer.progress=false"]) == 0
    result = summary(tmp_path)
    assert result["val"]["generated_accuracy"] >= 0.9 and result["test"]["generated_accuracy"] >= 0.9
    assert result["val"]["token_accuracy"] >= 0.98 and result["val"]["loss"] < 0.15
    assert (tmp_path / "loss.png").is_file() and (tmp_path / "sequence_accuracy.png").is_file()


@pytest.fixture(scope="module")
def pretrained(micro_speech_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tera") / "pretrain"
    assert main(["train", str(TERA / "pretrain/configs/synth.yaml"), f"task_args.corpus={micro_speech_corpus}",
                 *QUICK, *TINY_TERA, "optim.lr=3e-3", "trainer.max_steps=400", "trainer.val_every=100", "trainer.save_every=200",
                 f"trainer.out_dir={out}"]) == 0
    return out


@pytest.mark.slow
def test_tera_pretraining_learns_to_reconstruct_and_writes_its_outputs(pretrained, micro_speech_corpus):
    cfg = load_run_config(TERA / "pretrain/configs/synth.yaml", [f"task_args.corpus={micro_speech_corpus}",
                                                                  *QUICK, *TINY_TERA])
    task = build_task(cfg.task, cfg.task_args)
    torch.manual_seed(0)
    untrained = mmseq.create_model(cfg.model, **cfg.model_args)
    torch.manual_seed(0)
    before = evaluate(untrained, task, "val", cfg.trainer, torch.device("cpu"))["loss"]
    after = summary(pretrained)["best"]["value"]
    assert after < 0.9 * before, (before, after)  # L1 on the altered positions (measured: 0.83 x)
    for name in ("alteration.png", "loss.png", "states-s3prl.ckpt", "best/config.json", "tensorboard"):
        assert (pretrained / name).exists(), name
    exported = mmseq.load(pretrained / "states-s3prl.ckpt").eval()
    best = mmseq.load(pretrained / "best").eval()
    frames = torch.randn(1, 30, 80)
    torch.testing.assert_close(exported(frames), best(frames))


@pytest.mark.slow
@pytest.mark.parametrize("label, upstream, minimum", [
    # measured (this corpus, seeded): 0.91, 0.83, 1.0, 0.92, 1.0
    ("phone", "logmel", 0.8), ("phone", "tera", 0.7), ("speaker", "logmel", 0.8), ("intent", "logmel", 0.75),
    ("intent", "tera", 0.75),
])
def test_tera_probes_learn(label, upstream, minimum, pretrained, micro_speech_corpus, tmp_path):
    source = str(pretrained / "best") if upstream == "tera" else "logmel"
    assert main(["train", str(TERA / f"{label}/configs/synth.yaml"), f"task_args.corpus={micro_speech_corpus}",
                 *QUICK, *PROBE[label], f"model_args.upstream={source}", "optim.lr=5e-3", "trainer.max_steps=500",
                 "trainer.val_every=100", "trainer.save_every=500", f"trainer.out_dir={tmp_path}"]) == 0
    result = summary(tmp_path)
    assert result["task"]["label"] == label and result["test"]["accuracy"] >= minimum, result["test"]
    if label != "speaker":  # per held-out speaker too; the micro corpus holds out one in each split
        assert set(result["test"]) == {"loss", "accuracy", "accuracy/s5"}
        assert result["test"]["accuracy/s5"] == pytest.approx(result["test"]["accuracy"])
    assert (tmp_path / "accuracy.png").is_file()


@pytest.mark.slow
def test_a_probe_checkpoint_is_self_contained(pretrained, micro_speech_corpus, tmp_path, monkeypatch):
    run = tmp_path / "runs" / "probe"
    upstream = tmp_path / "runs" / "upstream"
    shutil.copytree(pretrained / "best", upstream)
    assert main(["train", str(TERA / "phone/configs/synth.yaml"), f"task_args.corpus={micro_speech_corpus}", *QUICK,
                 *PROBE["phone"], f"model_args.upstream={upstream}", "trainer.max_steps=5", "trainer.val_every=5",
                 f"trainer.out_dir={run}"]) == 0
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["args"]["upstream"]["builder"] == "tera_base"  # the upstream's spec, not its path
    frames = torch.randn(2, 40, 80)
    with torch.no_grad():
        expected = mmseq.load(run / "best").eval()(frames)
    shutil.rmtree(upstream)  # the upstream the probe was trained on is gone,
    moved = tmp_path / "elsewhere"
    shutil.move(str(tmp_path / "runs"), moved)  # the run folder moved,
    monkeypatch.chdir(tmp_path.parent)  # and we are somewhere else
    with torch.no_grad():
        again = mmseq.load(os.path.relpath(moved / "probe" / "best")).eval()(frames)
    torch.testing.assert_close(again, expected, rtol=0, atol=0)


@pytest.mark.slow
def test_frozen_upstream_cache_gives_the_logits_of_recomputing(pretrained, micro_speech_corpus):
    from mmseq.tasks.tera import DownstreamConfig, FrozenUpstreamCache, classifier_logits, tera_downstream

    task = tera_downstream(DownstreamConfig(corpus=str(micro_speech_corpus), label="phone"))
    torch.manual_seed(0)
    probe = mmseq.create_model("tera_downstream", upstream=mmseq.load(pretrained / "best"), num_classes=4).eval()
    cache = FrozenUpstreamCache()
    items = [task.train_set[i] for i in range(8)]
    first = task.collate(items[:5])  # fills the cache from one batch ...
    classifier_logits(probe, first, cache)
    second = task.collate(items[3:])  # ... then a batch that mixes cached and new utterances, padded differently
    cached = classifier_logits(probe, second, cache)
    with torch.no_grad():
        recomputed = probe(second["frames"], second["lengths"])
    valid = second["labels"] != -100
    torch.testing.assert_close(cached[valid], recomputed[valid], atol=1e-5, rtol=1e-5)
    assert len(cache.states) == 8


@pytest.mark.slow
def test_summarize_collects_the_probe_runs(pretrained, micro_speech_corpus, tmp_path):
    import importlib.util

    for name, upstream in (("phone_tera_linear", str(pretrained / "best")), ("phone_logmel_linear", "logmel")):
        assert main(["train", str(TERA / "phone/configs/synth.yaml"), f"task_args.corpus={micro_speech_corpus}",
                     *QUICK, *PROBE["phone"], f"model_args.upstream={upstream}", "trainer.max_steps=20",
                     "trainer.val_every=10", f"trainer.out_dir={tmp_path / name}"]) == 0
    spec = importlib.util.spec_from_file_location("summarize", TERA / "summarize.py")
    summarize = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarize)
    summarize.main([str(tmp_path)])
    text = (tmp_path / "results.md").read_text()
    tera, logmel = (summary(tmp_path / n)["test"]["accuracy"] for n in ("phone_tera_linear", "phone_logmel_linear"))
    assert f"phone, linear head: TERA - log-mel = {100 * (tera - logmel):+.1f} points" in text
    assert (tmp_path / "results.png").is_file()
