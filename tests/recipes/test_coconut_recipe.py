"""The continual SLU stream at tiny size (recipes/coconut/configs/tiny.yaml) on the micro corpus of tones: three
intents learned one per task. Fine-tuning forgets (after the last task it labels everything with the last intent);
experience replay keeps most of the old intents; a stream killed inside a task resumes to the same accuracy matrix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mmseq.train.continual as continual
from mmseq.cli import main

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "recipes" / "coconut" / "configs" / "tiny.yaml"
QUIET = ["run.trainer.progress=false"]


@pytest.fixture(scope="module")
def slu_corpus(micro_speech_corpus, tmp_path_factory) -> Path:
    """The training voices' utterances 0-17 for training, 18-20 for validation, 21-23 for test (three voices are
    too few for the tiny model to generalise to a new pitch in a few steps, as in the text recipes' test)."""
    out = tmp_path_factory.mktemp("micro_slu")
    parts: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for line in (micro_speech_corpus / "train.jsonl").read_text().splitlines():
        obj = json.loads(line)
        obj["audio"] = str((micro_speech_corpus / obj["audio"]).resolve())
        index = int(obj["id"].split("_")[1])
        parts["train" if index < 18 else "dev" if index < 21 else "test"].append(obj)
    for split, rows in parts.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return out


def overrides(corpus: Path, out: Path, *more: str) -> list[str]:
    return [f"run.task_args.corpus={corpus}", f"out_dir={out}", *QUIET, *more]


@pytest.fixture(scope="module")
def er_run(slu_corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coconut") / "er"
    assert main(["continual", "run", str(CONFIG), *overrides(slu_corpus, out)]) == 0
    return out


@pytest.mark.slow
def test_replay_remembers_what_fine_tuning_forgets(er_run, slu_corpus, tmp_path):
    er = json.loads((er_run / "metrics.json").read_text())
    assert er["stream"] == {"class_order": [0, 1, 2], "increments": [1, 1, 1]}
    assert [t["rehearsal_utterances"] for t in er["tasks"]] == [0, 6, 12]  # 6 per class, added task by task
    assert er["memory_size"] == 18
    R = er["accuracy_matrix"]["R"]
    assert R[0][0] >= 0.99 and R[0][1] is None
    assert er["last_acc"] >= 0.6 and er["avg_acc"] >= 0.75
    for picture in ("accuracy_matrix.png", "accuracy.png"):
        assert (er_run / picture).stat().st_size > 1000

    ft_out = tmp_path / "finetune"
    continual.run_stream(continual.load_continual_config(CONFIG, overrides(slu_corpus, ft_out,
                                                                           "strategy.name=finetune")))
    ft = json.loads((ft_out / "metrics.json").read_text())
    assert [t["rehearsal_utterances"] for t in ft["tasks"]] == [0, 0, 0]
    assert ft["last_acc"] <= 0.45 and ft["forgetting"] >= 0.5  # the last intent everywhere
    assert er["last_acc"] >= ft["last_acc"] + 0.25


@pytest.mark.slow
def test_a_stream_killed_inside_a_task_resumes_to_the_same_matrix(er_run, slu_corpus, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    cfg = continual.load_continual_config(CONFIG, overrides(slu_corpus, out))
    real_build = continual.build_slu
    calls = {"n": 0}

    def build_and_kill_in_task_1(args):
        task, data = real_build(args)
        if args.keep_labels == ["lights_on"]:  # task 1 (identity order over the sorted intents)
            loss = task.loss

            def dying_loss(model, batch):
                calls["n"] += 1
                if calls["n"] == 30:  # after the checkpoint of step 20
                    raise KeyboardInterrupt("killed")
                return loss(model, batch)

            task.loss = dying_loss
        return task, data

    monkeypatch.setattr(continual, "build_slu", build_and_kill_in_task_1)
    with pytest.raises(KeyboardInterrupt):
        continual.run_stream(cfg)
    assert json.loads((out / "stream.json").read_text())["task_runs"][0]["task"] == 0
    assert (out / "task_1" / "checkpoints").is_dir() and not (out / "task_1" / "metrics.json").exists()
    monkeypatch.setattr(continual, "build_slu", real_build)
    continual.run_stream(continual.load_continual_config(CONFIG, overrides(slu_corpus, out)))
    resumed = json.loads((out / "metrics.json").read_text())
    whole = json.loads((er_run / "metrics.json").read_text())
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert resumed["avg_acc"] == whole["avg_acc"]


@pytest.mark.slow
def test_coconut_with_sequence_kd_distils_from_the_previous_task(slu_corpus, tmp_path):
    out = tmp_path / "coconut"
    cfg = continual.load_continual_config(CONFIG, overrides(slu_corpus, out, "strategy.name=coconut_seq_kd",
                                                            "run.trainer.max_steps=20", "run.trainer.log_every=10"))
    result = continual.run_stream(cfg)
    assert len(result["accuracy_matrix"]["seen"]) == 3
    for t in (1, 2):
        args = (out / f"task_{t}" / "config.yaml").read_text()
        assert f"teacher: {out / f'task_{t - 1}' / 'best'}" in args and "seq_kd: true" in args
        logged = [json.loads(line) for line in (out / f"task_{t}" / "metrics.jsonl").read_text().splitlines()]
        train_rows = [row for row in logged if row["split"] == "train"]
        assert train_rows and all(row["nspt"] > 0 and row["mm"] > 0 for row in train_rows)
    first = [json.loads(line) for line in (out / "task_0" / "metrics.jsonl").read_text().splitlines()]
    assert "nspt" not in first[0] and first[0]["mm"] > 0  # no teacher for the first task; MM needs none


@pytest.mark.parametrize("name,tasks,first", [("fsc6", 6, 6), ("fsc10", 10, 4), ("slurp6", 6, 3),
                                             ("synth_fsc6", 6, 6)])
def test_real_corpus_configs_fit_their_stream_and_model(name, tasks, first):
    import mmseq

    cfg = continual.load_continual_config(CONFIG.parent / f"{name}.yaml")
    stream = continual.build_stream(cfg.stream, stream_classes := {"fsc6": 31, "fsc10": 31, "slurp6": 18,
                                                                          "synth_fsc6": 31}[name])
    assert stream.num_tasks == tasks and stream.increments[0] == first and stream.num_classes == stream_classes
    if name == "fsc10":
        assert stream.classes_of(0) == (19, 27, 30, 28)
    continual.SluConfig(**cfg.run.task_args)  # the task arguments are the task's
    sizes = {"vocab_size": 40, **({"feature_dim": 80} if cfg.run.task_args.get("upstream") else {})}
    model = mmseq.create_model(cfg.run.model, **{**cfg.run.model_args, **sizes})
    assert model.projection_heads.projection_dim == cfg.run.model_args["projection_dim"]


def test_compare_tabulates_finished_streams(er_run, tmp_path):
    table = continual.compare_runs([er_run, er_run], plot=tmp_path / "curves.png")
    row = [line for line in table.splitlines() if line.startswith("| er |")]
    er = json.loads((er_run / "metrics.json").read_text())
    minutes = sum(t["train_seconds"] for t in er["tasks"]) / 60
    assert row == [f"| er | 18 | 2 | {100 * er['avg_acc']:.2f} +- 0.00 | {100 * er['last_acc']:.2f} +- 0.00 | "
                   f"{100 * er['bwt']:.2f} +- 0.00 | {100 * er['forgetting']:.2f} +- 0.00 | - | {minutes:.1f} |"]
    assert (tmp_path / "curves.png").stat().st_size > 1000
    # COCONUT's ablations are their own rows; transcripts' WER is the last task's
    ablated = json.loads((er_run / "metrics.json").read_text())
    ablated["strategy"] = "coconut"
    ablated["config"]["strategy"].update(nspt=0.0, mm=0.1)
    ablated["tasks"][-1]["seen_wer"] = 0.25
    (tmp_path / "ablated").mkdir()
    (tmp_path / "ablated" / "metrics.json").write_text(json.dumps(ablated))
    table = continual.compare_runs([tmp_path / "ablated"])
    assert "| coconut without NSPT | 18 | 1 |" in table and "| 25.00 |" in table
