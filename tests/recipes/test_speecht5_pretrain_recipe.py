"""The SpeechT5 pre-training recipe at tiny size, as its README runs it: units with ``mmseq data units``, pre-training
with ``mmseq train configs/tiny.yaml``, then ASR fine-tuned from the checkpoint with ``configs/asr_finetune_tiny.yaml``,
on the micro corpus of tones (tests/recipes/conftest.py) with thresholds a broken recipe would miss.

The text half is runs of tone names ("a b a c"), the language the tone corpus' transcripts are in (as the text
recipes' test writes them)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from mmseq.cli import main

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "speecht5" / "pretrain" / "configs"
QUIET = ["trainer.progress=false"]


def _rows(run: Path, split: str) -> list[dict]:
    return [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == split]


@pytest.fixture(scope="module")
def corpus(micro_speech_corpus, tmp_path_factory) -> Path:
    """The training voices' utterances (0-17 train, 18-20 dev, 21-23 test) with their tone runs as text, units, and
    a text file of 400 random tone runs."""
    out = tmp_path_factory.mktemp("pretrain_micro")
    parts: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for line in (micro_speech_corpus / "train.jsonl").read_text().splitlines():
        obj = json.loads(line)
        tones: list[str] = []
        for phone in obj["phones"]:
            if phone["phone"] != "sil" and (not tones or tones[-1] != phone["phone"]):
                tones.append(phone["phone"])
        obj["audio"] = str((micro_speech_corpus / obj["audio"]).resolve())
        obj["text"] = " ".join(tones)
        index = int(obj["id"].split("_")[1])
        parts["train" if index < 18 else "dev" if index < 21 else "test"].append(obj)
    for split, rows in parts.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = random.Random(0)
    lines = []
    for _ in range(400):
        run = [rng.choice("abc")]
        while len(run) < rng.randint(3, 5):
            run.append(rng.choice([t for t in "abc" if t != run[-1]]))
        lines.append(" ".join(run))
    (out / "text.txt").write_text("\n".join(lines) + "\n")
    assert main(["data", "units", str(out / "train.jsonl"), str(out / "dev.jsonl"), str(out / "test.jsonl"),
                 "--clusters", "12", "--seed", "0"]) == 0
    return out


@pytest.mark.slow
def test_pretraining_learns_every_objective_and_asr_fine_tunes_from_it(corpus, tmp_path):
    run = tmp_path / "pretrain"
    assert main(["train", str(RECIPE / "tiny.yaml"), f"task_args.corpus={corpus}",
                 f"task_args.text_train={corpus / 'text.txt'}", f"trainer.out_dir={run}", *QUIET]) == 0
    rows = _rows(run, "train")
    first, last = rows[0], rows[-1]
    # Masked units are predicted from context well above chance (12 clusters: 1/12), the tone-name text is denoised,
    # the mel is reconstructed better than at the start, and the codebook is in use.
    assert last["unit_accuracy"] > 0.3 and last["unit_ce"] < first["unit_ce"] - 0.5, (first, last)
    assert last["text_ce"] < 1.0 < first["text_ce"], (first, last)
    assert last["l1"] < 0.7 * first["l1"], (first, last)
    assert last["code_perplexity"] > 2 and last["temperature"] < 2.0
    assert 0.3 < last["masked_share"] < 0.8  # rows equalised to the least masked one of each batch
    assert (run / "best" / "spm_char.model").is_file()

    asr = tmp_path / "asr"
    best = run / "best"
    assert main(["train", str(RECIPE / "asr_finetune_tiny.yaml"), f"task_args.corpus={corpus}",
                 f"task_args.tokenizer={best}", f"init_from.checkpoint={best}", f"trainer.out_dir={asr}", *QUIET]) == 0
    summary = json.loads((asr / "metrics.json").read_text())
    report = summary["init_from"]
    # everything but the new CTC head came from pre-training (LM head tied to the embedding: one tensor)
    assert report["unexpected"] == [] and set(report["missing"]) == {"encoder_postnet.proj.weight",
                                                                    "encoder_postnet.proj.bias"}, report
    test = summary["test"]
    last_asr = _rows(asr, "train")[-1]
    # Measured (seeded): pre-training at step 120 unit accuracy 0.60 (step 20: 0.14), text ce 0.56 (2.36), l1 1.42
    # (2.72); fine-tuned ASR training ce 0.66 / ctc 1.22, test wer 0.70, cer 0.59.
    assert last_asr["ce"] < 0.8 and last_asr["ctc"] < 1.5, last_asr
    assert test["cer"] < 0.8 and test["wer"] < 0.95, test
    assert math.isfinite(test["loss"])
