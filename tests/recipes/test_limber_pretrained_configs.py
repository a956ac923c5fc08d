"""The LiMBeR configs for real data (CC3M training, COCO / NoCaps / VQAv2 evaluation with CLIP RN50x16 + GPT-J),
at tiny size: each config parses with the paper's settings, its task reads a tiny fixture written in the real
layout (img2dataset's files output, COCO 2014, NoCaps val, VQAv2), and the model is built from local folders the
way the README says, with randomly initialised models of those architectures: open_clip's RN50 (the same
ModifiedResNet family as RN50x16, which is 167M parameters; at 64 px) and a 2-layer GPT-J saved with transformers,
its byte-level tokenizer written here. Nothing downloads."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmseq
from mmseq.cli import main
from mmseq.train.loop import load_run_config

ROOT = Path(__file__).resolve().parents[2]
LIMBER = ROOT / "recipes" / "limber"
SMALL = ["model_args.encoder.name=RN50", "model_args.encoder.image_size=64", "trainer.precision=fp32",
         "trainer.batch_size=4", "trainer.progress=false"]

pytestmark = pytest.mark.usefixtures("one_thread")


def launcher():
    spec = importlib.util.spec_from_file_location("limber_from_pretrained", LIMBER / "caption/from_pretrained.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_gptj(folder: Path) -> Path:
    """A random 2-layer GPT-J and a byte-level BPE tokenizer (256 byte tokens, no merges, <|endoftext|>)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPTJConfig, GPTJForCausalLM, PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    bpe = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    end = "<|endoftext|>"
    PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=end, bos_token=end, unk_token=end).save_pretrained(folder)
    torch.manual_seed(0)
    config = GPTJConfig(n_layer=2, n_embd=64, n_head=4, rotary_dim=16, vocab_size=len(vocab), n_positions=1024,
                        bos_token_id=vocab[end], eos_token_id=vocab[end])
    GPTJForCausalLM(config).save_pretrained(folder)
    return folder


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def image(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), COLOURS[colour]).save(path)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def coco_and_vqa(root: Path, split: str, start: int) -> None:
    """COCO 2014 captions and VQAv2 files of 3 images, images named as VQAv2 names them."""
    images, anns, questions, answers = [], [], [], []
    for i, colour in enumerate(COLOURS):
        image_id = start + i
        name = f"COCO_{split}_{image_id:012d}.jpg"
        image(root / split / name, colour)
        images.append({"id": image_id, "file_name": name, "height": 30, "width": 40})
        anns += [{"id": 10 * image_id + k, "image_id": image_id, "caption": f"a {colour} square {k}"}
                 for k in range(2)]
        qid = 100 * image_id
        questions.append({"question_id": qid, "image_id": image_id, "question": "what color is it?"})
        answers.append({"question_id": qid, "image_id": image_id, "multiple_choice_answer": colour,
                        "answers": [{"answer": colour, "answer_id": k + 1} for k in range(10)]})
    write_json(root / "annotations" / f"captions_{split}.json", {"images": images, "annotations": anns})
    write_json(root / "Questions" / f"v2_OpenEnded_mscoco_{split}_questions.json", {"questions": questions})
    write_json(root / "Annotations" / f"v2_mscoco_{split}_annotations.json", {"annotations": answers})


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("limber_real_layouts")
    cc3m = base / "cc3m"
    for split, shards in (("train", 2), ("validation", 1)):
        for n in range(3 * shards):
            colour = list(COLOURS)[n % 3]
            stem = cc3m / split / f"{n // 3:05d}" / f"{n:09d}"
            image(stem.with_suffix(".jpg"), colour)
            stem.with_suffix(".txt").write_text(f"a {colour} square\n")
            stem.with_suffix(".json").write_text(json.dumps({"key": stem.name, "status": "success"}))
    coco = base / "coco"
    coco_and_vqa(coco, "train2014", 1)
    coco_and_vqa(coco, "val2014", 101)
    nocaps = base / "nocaps"
    entries = []
    for i, (colour, domain) in enumerate(zip(COLOURS, ["in-domain", "near-domain", "out-domain"])):
        name = f"{i:016x}.jpg"
        image(nocaps / "val" / name, colour)
        entries.append({"id": i, "file_name": name, "open_images_id": name[:-4], "domain": domain})
    caps = [{"id": 10 * i + k, "image_id": i, "caption": f"a {c} thing"} for i, c in enumerate(COLOURS)
            for k in range(10)]
    write_json(nocaps / "nocaps_val_4500_captions.json", {"images": entries, "annotations": caps})
    return {"base": base, "cc3m": cc3m, "coco": coco, "nocaps": nocaps, "gptj": tiny_gptj(base / "gpt-j")}


def evaluate(config: Path, checkpoint: Path, overrides: list[str]) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["eval", str(config), "--checkpoint", str(checkpoint), *overrides]) == 0
    return json.loads(out.getvalue()[out.getvalue().index("{"):])


def test_real_data_configs_at_tiny_size(data, tmp_path):
    train_config = LIMBER / "caption/configs/cc3m_rn50x16_gptj.yaml"
    cfg = load_run_config(train_config)
    assert cfg.model_args["encoder"] == {"library": "open_clip", "name": "RN50x16", "features": "grid"}
    assert cfg.model_args["prefix_length"] is None and cfg.model_args["dropout"] == 0.1
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.beta1, cfg.optim.beta2) == ("adamw", 8e-4, 0.9, 0.95)
    assert (cfg.schedule.warmup_steps, cfg.trainer.clip_grad_norm, cfg.trainer.max_steps) == (100, 1.0, 15000)
    assert cfg.task_args["train_format"] == "img2dataset" and cfg.task_args["caption_prompt"] == "A picture of"
    # CC3M-scale: every batch's images encoded in the training step, read by the loader's workers; nothing cached
    assert cfg.task_args["feature_store"] == "none" and cfg.trainer.num_workers > 0
    # plain `mmseq train` cannot read the local folders: it stops, naming the launcher
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["train", str(train_config), f"task_args.root={data['cc3m']}",
                     f"trainer.out_dir={tmp_path / 'plain'}", *SMALL]) == 2
    assert "from_pretrained.py" in err.getvalue()

    run = tmp_path / "cc3m"
    features = tmp_path / "features"
    overrides = [f"task_args.root={data['cc3m']}", f"task_args.feature_cache={features}", "task_args.eval_images=3",
                 "trainer.max_steps=2", "trainer.val_every=2", "trainer.save_every=2", "schedule.warmup_steps=1",
                 f"trainer.out_dir={run}", "trainer.num_workers=1", *SMALL]
    assert launcher().main([str(train_config), "--lm", str(data["gptj"]), "--dtype", "fp32", *overrides]) == 0
    summary = json.loads((run / "metrics.json").read_text())
    assert {"loss", "cider_d", "bleu4"} <= set(summary["val"]), summary["val"]
    assert not features.exists()  # encoded per batch: no feature file of any split
    best = mmseq.load(run / "best")  # self-contained: the GPT-J config, every weight and the tokenizer
    assert best.prefix.proj.in_features == 2048 and best.prefix.prefix_length is None
    assert type(best.lm.model).__name__ == "GPTJForCausalLM" and best.lm.dim == 64
    ids = best.tokenizer.encode("a red square", add_eos=False)
    assert len(ids) == 12 and best.tokenizer.decode(ids) == "a red square"  # one token a byte
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_pretrained(data["gptj"])
    for name, value in lm.state_dict().items():  # the LM stayed frozen
        assert torch.equal(best.lm.model.state_dict()[name], value), name

    small = ["trainer.precision=fp32", "trainer.batch_size=4", "trainer.num_workers=0",
             f"task_args.feature_cache={tmp_path / 'eval'}"]
    coco = evaluate(LIMBER / "caption/configs/coco_eval.yaml", run / "best", [f"task_args.root={data['coco']}",
                                                                                *small])
    assert {"loss", "cider_d", "bleu4"} <= set(coco)
    assert "vqa_accuracy_4shot" not in coco  # no training split, so no shots (0-shot VQA: the folder has VQAv2)
    nocaps = evaluate(LIMBER / "caption/configs/nocaps_eval.yaml", run / "best", [
        f"task_args.root={data['nocaps']}", f"task_args.val_annotations={data['nocaps']}/nocaps_val_4500_captions.json",
        f"task_args.val_images={data['nocaps']}/val", *small])
    assert {f"cider_d/{d}" for d in ("in-domain", "near-domain", "out-domain")} <= set(nocaps), nocaps
    vqa = evaluate(LIMBER / "vqa/configs/vqav2_eval.yaml", run / "best", [f"task_args.root={data['coco']}", *small])
    assert {"vqa_accuracy_0shot", "vqa_accuracy_4shot", "cider_d"} <= set(vqa), vqa
    assert all(0 <= vqa[f"vqa_accuracy_{k}shot"] <= 100 for k in (0, 4))
    assert not (tmp_path / "eval").exists()
    # the same evaluation from fp32 shards on disk (feature_store disk): the same scores, the val images and the
    # shots' train images cached, 2 x 2 RN50 grid tokens of 2048 an image
    shards = tmp_path / "shards"
    on_disk = evaluate(LIMBER / "vqa/configs/vqav2_eval.yaml", run / "best", [
        f"task_args.root={data['coco']}", *small, "task_args.feature_store=disk", "task_args.feature_shard_dtype=float32",
        f"task_args.feature_cache={shards}"])
    assert on_disk == pytest.approx(vqa)
    assert sorted(p.name.split(".")[0] for p in shards.iterdir()) == ["train2014", "val2014"]
    assert np.load(next(shards.glob("val2014.*/shard_000000.npy"))).shape == (3, 4, 2048)
