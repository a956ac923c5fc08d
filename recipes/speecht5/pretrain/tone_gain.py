"""The pre-training gain at test size: ASR fine-tuned from the tiny pre-training run (with and without the codebook)
versus from scratch, on all and on 10% of the labelled utterances, same budget and seeds, on the recipe tests'
micro corpus of tones (tests/recipes/conftest.py). A measurement of what the recipe does at toy scale, minutes of CPU;
the synthetic-corpus experiment is the README's "Not run yet" list.

    OMP_NUM_THREADS=1 python recipes/speecht5/pretrain/tone_gain.py --out runs/speecht5/pretrain_tone_gain

Prints a markdown table (test WER / CER, mean and spread over seeds, CPU seconds) and writes it with every run's
numbers to OUT/results.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import statistics
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
CONFIGS = Path(__file__).resolve().parent / "configs"
QUIET = ["trainer.progress=false"]


def build_corpus(out: Path) -> Path:
    """The tone corpus with transcripts (training voices' utterances 0-17 train, 18-20 dev, 21-23 test), a 10%
    training manifest, 400 lines of tone-name text and 12 MFCC units per 20 ms frame."""
    spec = importlib.util.spec_from_file_location("tone_corpus", ROOT / "tests" / "recipes" / "conftest.py")
    tone_corpus = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tone_corpus)
    from mmseq.cli import main

    raw = tone_corpus.make_micro_speech_corpus((out / "raw").resolve())
    corpus = out / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    parts: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for line in (raw / "train.jsonl").read_text().splitlines():
        obj = json.loads(line)
        tones: list[str] = []
        for phone in obj["phones"]:
            if phone["phone"] != "sil" and (not tones or tones[-1] != phone["phone"]):
                tones.append(phone["phone"])
        obj["audio"], obj["text"] = str((raw / obj["audio"]).resolve()), " ".join(tones)
        index = int(obj["id"].split("_")[1])
        parts["train" if index < 18 else "dev" if index < 21 else "test"].append(obj)
    parts["train10"] = parts["train"][::10]  # 6 of 54
    for split, rows in parts.items():
        (corpus / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = random.Random(0)
    lines = []
    for _ in range(400):
        run = [rng.choice("abc")]
        while len(run) < rng.randint(3, 5):
            run.append(rng.choice([t for t in "abc" if t != run[-1]]))
        lines.append(" ".join(run))
    (corpus / "text.txt").write_text("\n".join(lines) + "\n")
    assert main(["data", "units", *(str(corpus / f"{s}.jsonl") for s in ("train", "dev", "test", "train10")),
                 "--clusters", "12", "--seed", "0"]) == 0
    return corpus


def timed(argv: list[str]) -> float:
    from mmseq.cli import main

    start = time.process_time()
    assert main(argv) == 0, argv
    return time.process_time() - start


def table(runs: list[dict]) -> str:
    """Mean ± population spread over seeds of each (labels, start) cell."""
    lines = ["| labelled utterances | ASR starts from | test WER | test CER | CPU s per run |", "|---|---|---|---|---|"]
    for labels, shown in (("train.jsonl", "54 (100%)"), ("train10.jsonl", "6 (10%)")):
        for start in ("scratch", "pretrained", "pretrained_no_codebook"):
            rows = [r for r in runs if r.get("labels") == labels and r.get("start") == start]
            wer, cer = [r["wer"] for r in rows], [r["cer"] for r in rows]
            lines.append(f"| {shown} | {start} | {statistics.mean(wer):.3f} ± {statistics.pstdev(wer):.3f} | "
                         f"{statistics.mean(cer):.3f} ± {statistics.pstdev(cer):.3f} | "
                         f"{statistics.mean(r['cpu_s'] for r in rows):.0f} |")
    return "\n".join(lines)


def main_(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    out = Path(args.out)
    corpus = build_corpus(out)
    runs: list[dict] = []
    pretrained: dict[str, Path] = {}
    for name, extra in (("pretrained", []), ("pretrained_no_codebook", ["model_args.codebook=false"])):
        run = out / name
        seconds = timed(["train", str(CONFIGS / "tiny.yaml"), f"task_args.corpus={corpus}",
                         f"task_args.text_train={corpus / 'text.txt'}", f"trainer.out_dir={run}", *extra, *QUIET])
        pretrained[name] = run / "best"
        runs.append({"run": name, "cpu_s": seconds})
    vocab = pretrained["pretrained"]  # one vocabulary for every ASR run (the pre-training text's characters)
    for labels in ("train.jsonl", "train10.jsonl"):
        for start in ("scratch", *pretrained):
            for seed in args.seeds:
                run = out / f"asr_{start}_{labels.split('.')[0]}_s{seed}"
                init = ["init_from.checkpoint=null"] if start == "scratch" else \
                    [f"init_from.checkpoint={pretrained[start]}"]
                seconds = timed(["train", str(CONFIGS / "asr_finetune_tiny.yaml"), f"task_args.corpus={corpus}",
                                 f"task_args.train_manifest={labels}", f"task_args.tokenizer={vocab}", *init,
                                 f"trainer.seed={seed}", f"trainer.out_dir={run}", *QUIET])
                test = json.loads((run / "metrics.json").read_text())["test"]
                runs.append({"run": run.name, "start": start, "labels": labels, "seed": seed, "cpu_s": seconds,
                             "wer": test["wer"], "cer": test["cer"]})
    text = table(runs)
    print(text)
    (out / "results.json").write_text(json.dumps({"runs": runs, "table": text}, indent=1) + "\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/speecht5/pretrain_tone_gain")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    main_(parser.parse_args())
