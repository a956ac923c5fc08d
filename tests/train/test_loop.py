import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmseq.config import load_config
from mmseq.errors import ConfigError
from mmseq.train.config import RunConfig, ScheduleConfig
from mmseq.train.log import read_metrics
from mmseq.train.loop import train
from mmseq.train.schedules import lr_factor
from mmseq.train.state import latest_checkpoint, load_trainer_state

RUNNER = Path(__file__).with_name("runner.py")
BASE = ["task=sequence_reversal", "model=text_transformer_tiny", "task_args.num_train=96", "task_args.num_val=32",
        "trainer.progress=false", "trainer.log_every=1", "schedule.warmup_steps=2"]


def run_cfg(tmp_path, *overrides):
    return load_config(RunConfig, None, [*BASE, f"trainer.out_dir={tmp_path}", *overrides])


def final_weights(out_dir):
    return load_file(str(latest_checkpoint(Path(out_dir) / "checkpoints") / "model.safetensors"))


def test_schedules():
    cfg = ScheduleConfig(name="linear", warmup_steps=10)
    assert lr_factor(0, cfg, 110) == pytest.approx(0.1) and lr_factor(9, cfg, 110) == 1.0
    assert lr_factor(60, cfg, 110) == pytest.approx(0.5) and lr_factor(110, cfg, 110) == 0.0
    cos = ScheduleConfig(name="cosine", warmup_steps=0, min_lr_ratio=0.1)
    assert lr_factor(50, cos, 100) == pytest.approx(0.55) and lr_factor(100, cos, 100) == pytest.approx(0.1)
    noam = ScheduleConfig(name="noam", warmup_steps=100)
    assert lr_factor(100, noam, 1000) == 1.0 and lr_factor(400, noam, 1000) == pytest.approx(0.5)
    assert lr_factor(50, noam, 1000) == pytest.approx(0.5)


def test_run_writes_logs_checkpoints_and_best(tmp_path):
    summary = train(run_cfg(tmp_path, "trainer.max_steps=6", "trainer.val_every=3", "trainer.save_every=2",
                            "trainer.keep_checkpoints=2", "trainer.batch_size=16"))
    metric_names = {"loss", "token_accuracy", "sequence_accuracy", "generated_accuracy"}
    assert set(summary["val"]) == metric_names and set(summary["test"]) == metric_names
    assert summary["steps"] == 6 and summary["best"]["step"] in (3, 6)
    assert json.loads((tmp_path / "metrics.json").read_text()) == json.loads(json.dumps(summary))
    assert (tmp_path / "loss.png").is_file()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if r["split"] == "val"] == [3, 6]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_00000004",
                                                                              "step_00000006"]
    assert (tmp_path / "best" / "model.safetensors").is_file() and (tmp_path / "tensorboard").is_dir()
    # Trainer state is plain data: it loads with weights_only=True.
    state = load_trainer_state(tmp_path / "checkpoints" / "step_00000006")
    progress = state["progress"]
    assert (progress["step"], progress["epoch"], progress["batches_in_epoch"]) == (6, 0, 6)  # 96 items / 16


def test_gradient_accumulation_matches_one_large_batch(tmp_path):
    # SGD: Adam's normalisation would magnify float rounding of near-zero gradients into 1e-5 weight noise.
    common = ["model_args.dropout=0.0", "trainer.max_steps=4", "trainer.val_every=0", "optim.name=sgd",
              "optim.lr=0.1"]
    train(run_cfg(tmp_path / "a", *common, "trainer.batch_size=16", "trainer.grad_accum=1"))
    train(run_cfg(tmp_path / "b", *common, "trainer.batch_size=8", "trainer.grad_accum=2"))
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)


def test_bf16_autocast_trains(tmp_path):
    summary = train(run_cfg(tmp_path, "trainer.precision=bf16", "trainer.max_steps=3", "trainer.batch_size=8"))
    assert torch.isfinite(torch.tensor(summary["val"]["loss"]))


def test_config_errors_before_training(tmp_path):
    with pytest.raises(ConfigError, match="best_metric 'wer' is not a validation metric"):
        train(run_cfg(tmp_path, "trainer.max_steps=1", "trainer.best_metric=wer", "trainer.batch_size=8"))
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        train(run_cfg(tmp_path, "trainer.precision=fp16", "trainer.device=cpu"))


def _runner(out_dir, *extra):
    return [sys.executable, str(RUNNER), *[a.replace("sequence_reversal", "slow_reversal") for a in BASE],
            f"trainer.out_dir={out_dir}", *extra]


@pytest.mark.slow
def test_sigkill_and_resume_ends_with_the_same_weights(tmp_path):
    # Dropout on, epochs of 6 batches, accumulation and validation: every piece of state has to come back.
    args = ["trainer.max_steps=24", "trainer.batch_size=16", "trainer.grad_accum=2", "trainer.save_every=2",
            "trainer.val_every=5", "model_args.dropout=0.1", "trainer.seed=7"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_runner(tmp_path / "straight", *args), check=True, env=env, capture_output=True)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(_runner(killed, *args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        ckpt = latest_checkpoint(killed / "checkpoints")
        if ckpt is not None and int(ckpt.name.split("_")[1]) >= 8:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    stopped_at = int(latest_checkpoint(killed / "checkpoints").name.split("_")[1])
    assert 8 <= stopped_at < 24, "the run was not killed mid-way"
    subprocess.run(_runner(killed, *args), check=True, env=env, capture_output=True)

    a, b = final_weights(tmp_path / "straight"), final_weights(killed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # The resumed log is the uninterrupted one: no duplicated or missing steps, same losses.
    assert read_metrics(killed / "metrics.jsonl") == read_metrics(tmp_path / "straight" / "metrics.jsonl")


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    # With the encoder frozen for the first 3 steps: DDP is rebuilt when the trained parameters change.
    args = ["trainer.max_steps=6", "trainer.batch_size=16", "trainer.val_every=0", "model_args.dropout=0.0",
            "trainer.device=cpu", "optim.name=sgd", "optim.lr=0.1", "freeze=[{params: [encoder.*], until_step: 3}]"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(_runner(tmp_path / "one", *args), check=True, env=env, capture_output=True)
    ddp = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(ddp + _runner(tmp_path / "two", *args)[1:], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-6, rtol=1e-5)
    records = read_metrics(tmp_path / "two" / "metrics.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]  # rank 0 only
