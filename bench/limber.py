"""Benchmark: LiMBeR's training step with the frozen encoder's features cached (memory, disk shards) against encoding
each batch's images in the step, and caption generation on mmseq's KV-cache decoding against transformers'
``generate(inputs_embeds=...)`` on the same LM.

Both use one model: a timm image encoder (random weights, ``--encoder``; ``--features`` pooled, mapped to
``--prefix`` prompts, or grid, one prompt per grid token) and a randomly initialised GPT-2 layout LM
(``--lm-layers`` x ``--lm-dim``), both frozen, and the linear map.

* **Training step** (what ``limber_caption`` runs): forward, caption-token loss, backward and an AdamW step of the
  map, over a batch of ``--batch`` images with captions of ``--caption-tokens`` tokens, for each
  ``task_args.feature_store``. *Per batch, reading in the step*: the step reads the JPEG files, applies the
  encoder's transform and runs the frozen encoder (``none`` with ``trainer.num_workers=0``). *Per batch*: the
  images come read and transformed (``none``'s collate, run by the loader's workers) and the step runs the frozen
  encoder. *Disk*: the step reads the batch's features from the fp16 shards encoded once before training
  (``disk``, memory-mapped). *Memory*: it indexes the fp32 features held in memory (``memory``).
* **Generation**: greedy captions of ``--new-tokens`` tokens after ``[image] "A picture of"`` for a batch of
  images; mmseq's ``LimberDecoding`` (prompt once into the KV cache, then one token per step) against the same
  GPT-2 module's ``generate(inputs_embeds=..., attention_mask=...)``, also cached. EOS is disabled on both
  sides so every row runs to the same length; the ids must agree.

Times are medians over ``--repeats`` alternating rounds (``bench/timing.py``).

    python bench/limber.py [--repeats 5] [--threads 2] [--encoder resnet50] [--image-size 224] [--features grid]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from mmseq.generation.text import greedy_search
from mmseq.models.limber import ImagePrefix, LimberModel, TransformersCausalLM, build_image_encoder
from mmseq.tasks.limber import (LimberDecoding, cached_features, caption_batch, image_transform, limber_caption_loss,
                                load_transformed, prepare_images, sharded_features)
from timing import machine_line, median_times  # bench/timing.py


class _Ids:
    """Characters as token ids, for the tokenizer interface the task uses (EOS: the last id)."""

    def __init__(self, vocab: int):
        self.eos_id, self.pad_id, self.vocab = vocab - 1, 0, vocab

    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        ids = [1 + (ord(c) % (self.vocab - 2)) for c in text]
        return ids + [self.eos_id] if add_eos else ids


def build(args) -> tuple[LimberModel, torch.nn.Module]:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    encoder = build_image_encoder({"library": "timm", "name": args.encoder, "image_size": args.image_size,
                                   "features": args.features})
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=args.vocab, n_positions=256, n_embd=args.lm_dim,
                                      n_layer=args.lm_layers, n_head=args.lm_dim // 64)).eval()
    prefix = None if args.features == "grid" else args.prefix  # grid: one prompt per grid token
    model = LimberModel(encoder, ImagePrefix(encoder.output_dim, args.lm_dim, prefix), TransformersCausalLM(gpt2))
    return model, gpt2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--features", default="pooled", choices=["pooled", "grid"])
    parser.add_argument("--lm-layers", type=int, default=4)
    parser.add_argument("--lm-dim", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--prefix", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--caption-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(machine_line())
    model, gpt2 = build(args)
    tokenizer = _Ids(args.vocab)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.batch):
            paths.append(str(Path(tmp) / f"{i}.jpg"))
            Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(paths[-1])
        captions = ["".join(chr(97 + int(c)) for c in rng.integers(0, 26, args.caption_tokens))
                    for _ in range(args.batch)]
        features = cached_features(model, paths, Path(tmp) / "features")  # once, before training
        shards = sharded_features(model, paths, Path(tmp) / "shards", shard_size=max(1, args.batch // 4))
        images = load_transformed(image_transform(model), paths)  # what the loader's workers hand the step
        params = [p for p in model.parameters() if p.requires_grad]
        optim = torch.optim.AdamW(params, lr=8e-4, betas=(0.9, 0.95))

        def step(feats: torch.Tensor) -> None:
            model.train()
            loss, _ = limber_caption_loss(model, caption_batch(tokenizer, feats, captions))
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()

        order = torch.randperm(args.batch, generator=torch.Generator().manual_seed(0))  # a shuffled batch

        def plain() -> None:
            step(model.encode_images(prepare_images(model, [paths[i] for i in order])))

        def per_batch() -> None:
            step(model.encode_images(images[order]))

        def disk() -> None:
            step(shards[order])

        def memory() -> None:
            step(features[order])

        times = median_times([plain, per_batch, disk, memory], args.repeats)
        size = features.shape[1:]
        print(f"\ntraining step, batch {args.batch}, {args.encoder} @ {args.image_size}px, {args.features} features "
              f"{list(size)} ({size.numel() * 4 / 1e6:.3f} MB an image in fp32) + GPT-2 "
              f"{args.lm_layers}x{args.lm_dim}:")
        rows = ["per batch, reading and transforming in the step (feature_store none, num_workers 0)",
                "per batch, images from the loader (feature_store none)",
                "cached on disk, fp16 shards (feature_store disk)", "cached in memory, fp32 (feature_store memory)"]
        print("| path | median s/step | speed-up over per batch |\n|---|---:|---:|")
        for row, t in zip(rows, times):
            print(f"| {row} | {t:.3f} | {times[1] / t:.2f}x |")

        model.eval()
        with torch.inference_mode():
            image_embeds = model.image_embeddings(features=features)
            prompt = model.embed_tokens(torch.tensor([tokenizer.encode("A picture of", add_eos=False)]))
            embeds = torch.cat([image_embeds, prompt.expand(args.batch, -1, -1)], 1)
            lengths = torch.full((args.batch,), embeds.shape[1])
            out: dict[str, torch.Tensor] = {}

            def ours() -> None:
                out["ours"] = greedy_search(LimberDecoding(model, embeds, lengths), max_new_tokens=args.new_tokens,
                                            eos_id=-1, pad_id=tokenizer.pad_id)  # no EOS: full length

            def theirs() -> None:
                out["theirs"] = gpt2.generate(inputs_embeds=embeds, attention_mask=torch.ones(embeds.shape[:2],
                                              dtype=torch.long), max_new_tokens=args.new_tokens,
                                              min_new_tokens=args.new_tokens, do_sample=False, num_beams=1,
                                              pad_token_id=0, eos_token_id=None, use_cache=True)

            t_ours, t_theirs = median_times([ours, theirs], args.repeats)
        same = torch.equal(out["ours"], out["theirs"][:, -args.new_tokens:])
        print(f"\ngreedy generation, batch {args.batch}, {args.new_tokens} new tokens (same ids: {same}):")
        print(f"| implementation | median s | speed-up |\n|---|---:|---:|\n| transformers generate(inputs_embeds) | "
              f"{t_theirs:.3f} | 1.00x |\n| mmseq LimberDecoding (KV cache) | {t_ours:.3f} | "
              f"{t_theirs / t_ours:.2f}x |")


if __name__ == "__main__":
    main()
