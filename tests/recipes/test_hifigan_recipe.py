"""The HiFi-GAN recipe at tiny size on the micro corpus of tones: it trains adversarially through ``mmseq train``,
lowers the mel L1 well below the untrained generator's, resumes exactly, fine-tunes from a transformers
``SpeechT5HifiGan`` folder, and its ``best/`` is a vocoder the TTS pipeline takes in place of Griffin-Lim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import mmseq
from mmseq.cli import main
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.tasks import build_task
from mmseq.train.log import read_metrics
from mmseq.train.loop import evaluate, load_run_config
from mmseq.train.state import latest_checkpoint, load_trainer_state

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes/speecht5/hifigan/configs/tiny.yaml"


pytestmark = pytest.mark.usefixtures("one_thread")


def run(corpus: Path, out: Path, *overrides: str) -> dict:
    assert main(["train", str(TINY), f"task_args.corpus={corpus}", "trainer.progress=false",
                 f"trainer.out_dir={out}", *overrides]) == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(micro_speech_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hifigan") / "tiny"
    run(micro_speech_corpus, out)
    return out


@pytest.mark.slow
def test_tiny_recipe_lowers_the_mel_l1_and_writes_its_outputs(trained, micro_speech_corpus):
    cfg = load_run_config(TINY, [f"task_args.corpus={micro_speech_corpus}"])
    task = build_task(cfg.task, cfg.task_args)
    torch.manual_seed(0)
    untrained = mmseq.create_model(cfg.model, **cfg.model_args)
    before = evaluate(untrained, task, "val", cfg.trainer, torch.device("cpu"))["mel_l1"]
    summary = json.loads((trained / "metrics.json").read_text())
    after = summary["best"]["value"]
    print(f"val mel L1: untrained {before:.3f}, trained {after:.3f}; test {summary['test']}")
    assert summary["best"]["metric"] == "mel_l1" and after < 0.75 * before, (before, after)
    assert summary["test"]["griffin_lim_mel_l1"] > 0 and summary["adversary_parameters"] > 0
    train_records = [r for r in read_metrics(trained / "metrics.jsonl") if r["split"] == "train"]
    for key in ("loss", "adversary_loss", "mel_l1", "feature_matching", "adversarial", "real_score", "fake_score"):
        assert all(np.isfinite(r[key]) for r in train_records), key
    for name in ("loss.png", "mel_l1.png", "samples/mel.png", "tensorboard", "best/config.json"):
        assert (trained / name).exists(), name
    assert len(list((trained / "samples").glob("*_hifigan.wav"))) == 2
    # best/ and the checkpoints hold the generator alone; the discriminators are in the trainer state.
    assert set(load_file(str(trained / "best/model.safetensors"))) == set(untrained.state_dict())
    state = load_trainer_state(latest_checkpoint(trained / "checkpoints"))
    assert set(state["adversary"]) == {"module", "optimizer", "scheduler"}
    assert any("parametrizations" in k for k in state["adversary"]["module"])


@pytest.mark.slow
def test_a_trained_vocoder_replaces_griffin_lim_in_the_tts_pipeline(trained, tmp_path):
    tokenizer = SpeechT5CharTokenizer.train(["hello world"] * 3)
    torch.manual_seed(0)
    tts = mmseq.create_model("speecht5_tts_tiny", vocab_size=len(tokenizer), num_mel_bins=80,
                             speech_prenet_dropout=0.0)
    tts.tokenizer = tokenizer
    with torch.no_grad():
        tts.decoder_postnet.prob_out.bias.fill_(-2.0)
    mmseq.save_pretrained(tts, tmp_path / "tts")
    vocoder = mmseq.load(trained / "best").eval()
    pipe = mmseq.pipeline("tts", tmp_path / "tts", vocoder=trained / "best", device="cpu")
    wav, rate = pipe("hello world", max_len_ratio=2.0)
    assert rate == 16000 and wav.size > 0 and wav.size % 256 == 0 and np.isfinite(wav).all()
    # What the pipeline plays is the trained vocoder's output for the generated mel frames.
    from mmseq.generation import generate_speech

    ids, lengths = tokenizer.batch_encode(["hello world"], strict=True)
    with torch.no_grad():
        out = generate_speech(pipe.model, ids, lengths, max_len_ratio=2.0)
        expected = vocoder(out.mel)[0, : int(out.lengths[0]) * 256].numpy()
    np.testing.assert_allclose(wav, expected, atol=1e-5)


@pytest.mark.slow
def test_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(micro_speech_corpus, tmp_path):
    common = ["trainer.val_every=2", "trainer.save_every=2", "trainer.log_every=1", "task_args.samples=0",
              "task_args.griffin_lim_baseline=false"]
    run(micro_speech_corpus, tmp_path / "straight", *common, "trainer.max_steps=6")
    run(micro_speech_corpus, tmp_path / "resumed", *common, "trainer.max_steps=4")  # stops at 4 ...
    run(micro_speech_corpus, tmp_path / "resumed", *common, "trainer.max_steps=6")  # ... and goes on from there
    a, b = (latest_checkpoint(tmp_path / name / "checkpoints") for name in ("straight", "resumed"))
    assert a.name == b.name == "step_00000006"
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    da, db = (load_trainer_state(p)["adversary"] for p in (a, b))
    assert all(torch.equal(da["module"][k], db["module"][k]) for k in da["module"])
    assert da["optimizer"]["state"].keys() == db["optimizer"]["state"].keys()
    assert all(torch.equal(da["optimizer"]["state"][i]["exp_avg_sq"], db["optimizer"]["state"][i]["exp_avg_sq"])
               for i in da["optimizer"]["state"])
    train_log = [[r for r in read_metrics(tmp_path / name / "metrics.jsonl") if r["split"] == "train"]
                 for name in ("straight", "resumed")]
    assert train_log[0] == train_log[1] and len(train_log[0]) == 6


@pytest.mark.slow
def test_fine_tuning_starts_from_a_transformers_speecht5_hifigan_folder(micro_speech_corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.SpeechT5HifiGanConfig(upsample_initial_channel=16, resblock_kernel_sizes=[3],
                                                resblock_dilation_sizes=[[1, 3]])
    hf = transformers.SpeechT5HifiGan(config).eval()
    with torch.no_grad():
        hf.mean.normal_()
        hf.scale.uniform_(0.5, 2.0)
    hf.apply_weight_norm()  # stored as transformers trains it: weight-norm pairs, folded on load
    hf.save_pretrained(tmp_path / "speecht5_hifigan")
    summary = run(micro_speech_corpus, tmp_path / "run", f"init_from.checkpoint={tmp_path / 'speecht5_hifigan'}",
                  "model_args.normalize_before=true", "trainer.max_steps=1", "trainer.val_every=1",
                  "task_args.samples=0", "task_args.griffin_lim_baseline=false")
    start = mmseq.load(tmp_path / "speecht5_hifigan")
    assert summary["init_from"]["missing"] == [] and summary["init_from"]["unexpected"] == []
    assert summary["init_from"]["loaded"] == len(start.state_dict())
    tuned = mmseq.load(tmp_path / "run" / "best")
    assert torch.equal(tuned.mean, hf.mean) and torch.equal(tuned.scale, hf.scale)
    for key, value in start.state_dict().items():  # one Adam step of lr 2e-3 away from the start
        assert (tuned.state_dict()[key] - value).abs().max() <= 2.5e-3, key


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(micro_speech_corpus, tmp_path):
    # Both networks are wrapped, both optimizers step, and the segment crops do not depend on the rank.
    args = ["train", str(TINY), f"task_args.corpus={micro_speech_corpus}", "trainer.progress=false",
            "trainer.max_steps=3", "trainer.val_every=0", "trainer.device=cpu", "task_args.samples=0",
            "task_args.griffin_lim_baseline=false"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "mmseq", *args, f"trainer.out_dir={tmp_path / 'one'}"], check=True,
                   env=env, capture_output=True)
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "mmseq"]
    result = subprocess.run(ddp + [*args, f"trainer.out_dir={tmp_path / 'two'}"], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (latest_checkpoint(tmp_path / name / "checkpoints") for name in ("one", "two"))
    a, b = load_file(str(one / "model.safetensors")), load_file(str(two / "model.safetensors"))
    for key in a:  # Adam magnifies float rounding of the gradient all-reduce a little
        torch.testing.assert_close(a[key], b[key], atol=1e-4, rtol=1e-4)
    da, db = (load_trainer_state(p)["adversary"]["module"] for p in (one, two))
    for key in da:
        torch.testing.assert_close(da[key], db[key], atol=1e-4, rtol=1e-4)
