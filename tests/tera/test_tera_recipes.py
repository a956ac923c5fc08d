"""The TERA recipes end to end at tiny size on a made-up corpus (noise audio with phone times)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "tera"
TINY_MODEL = ["model_args.dim=32", "model_args.heads=2", "model_args.ffn_dim=64", "model_args.layers=2"]


def make_corpus(root: Path) -> None:
    rng = np.random.default_rng(0)
    phones = ["sil", "a", "b", "c"]
    for split, speakers in (("train", ["s1", "s2"]), ("dev", ["s3"]), ("test", ["s4"])):
        lines = []
        for spk in speakers:
            for i in range(4):
                seconds = 0.5 + 0.1 * i
                wav = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
                path = root / "wav" / f"{spk}_{i}.wav"
                path.parent.mkdir(parents=True, exist_ok=True)
                sf.write(path, wav, 16000)
                step = seconds / 4
                lines.append({"id": f"{spk}_{i}", "audio": f"wav/{spk}_{i}.wav", "duration": seconds, "speaker": spk,
                              "intent": f"intent{i % 2}",
                              "phones": [{"phone": p, "start": k * step, "end": (k + 1) * step}
                                         for k, p in enumerate(phones)]})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


@pytest.mark.slow
def test_pretrain_then_phone_probe(tmp_path, monkeypatch):
    make_corpus(tmp_path / "corpus")
    monkeypatch.syspath_prepend(str(RECIPES))
    import tera_downstream as downstream

    spec = importlib.util.spec_from_file_location("tera_pretrain_recipe", RECIPES / "pretrain" / "train.py")
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    pretrain_main = pretrain.main

    common = [f"task_args.corpus={tmp_path / 'corpus'}", "trainer.max_steps=4", "trainer.val_every=2",
              "trainer.save_every=2", "trainer.batch_size=4", "trainer.progress=false"]
    pre_out = tmp_path / "pretrain"
    pretrain_main([str(RECIPES / "pretrain/configs/synth.yaml"), *common, *TINY_MODEL,
                   "schedule.warmup_steps=1", f"trainer.out_dir={pre_out}", "task_args.ablation=T-F-M"])
    record = json.loads((pre_out / "metrics.json").read_text())
    assert record["val_l1_on_altered"] > 0
    for name in ("loss.png", "alteration.png", "states-s3prl.ckpt", "best/config.json"):
        assert (pre_out / name).exists(), name
    assert list((pre_out / "tensorboard").iterdir())
    for upstream in (str(pre_out / "best"), str(pre_out / "states-s3prl.ckpt"), "logmel"):
        out = tmp_path / f"phone-{Path(upstream).name}"
        downstream.main([str(RECIPES / "phone/configs/synth.yaml"), *common, "model_args.num_classes=4",
                         f"model_args.upstream={upstream}", f"trainer.out_dir={out}"], "doc")
        result = json.loads((out / "metrics.json").read_text())
        assert 0 <= result["test_accuracy"] <= 1 and result["classes"] == 4
    from by_speaker import by_speaker

    per_speaker = by_speaker(out)  # the log-mel probe: one speaker in each held-out split of the made-up corpus
    assert list(per_speaker) == ["val s3", "test s4"]
    assert per_speaker["test s4"] == pytest.approx(result["test_accuracy"])
    out = tmp_path / "intent"
    downstream.main([str(RECIPES / "intent/configs/synth.yaml"), *common, "model_args.num_classes=2",
                     "model_args.upstream=logmel", "model_args.hidden_dim=8", f"trainer.out_dir={out}"], "doc")
    assert json.loads((out / "metrics.json").read_text())["head"] == "1 hidden (8)"
    sys.path.insert(0, str(RECIPES))
    from summarize import main as summarize

    summarize([str(tmp_path)])
    assert (tmp_path / "results.png").exists()
