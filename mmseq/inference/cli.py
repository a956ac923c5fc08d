"""``mmseq infer TASK --model DIR INPUT...``: text tasks print one line per input; speech tasks write wavs."""

from __future__ import annotations

import argparse
from pathlib import Path


from mmseq.data.audio import save_audio
from mmseq.errors import InputError
from mmseq.inference import PIPELINES, pipeline


def _run(args: argparse.Namespace) -> int:
    pipe = pipeline(args.task, args.model, vocoder=args.vocoder, device=args.device, dtype=args.dtype)
    kwargs: dict = {"batch_size": args.batch_size}
    if args.task in ("asr", "st"):
        kwargs.update(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
    if args.task == "image-to-text":
        kwargs.update(num_beams=args.num_beams, max_new_tokens=args.max_new_tokens)
        if args.prompt is not None:
            kwargs.update(prompt=args.prompt)
    if args.task == "vqa":
        questions = args.question or []
        if len(questions) not in (1, len(args.inputs)):
            raise InputError(f"vqa: give one --question for all images or one per image, got {len(questions)}")
        kwargs.update(questions=questions * len(args.inputs) if len(questions) == 1 else questions,
                      num_beams=args.num_beams)
    if args.task in ("tts", "vc", "se"):
        kwargs.update(speaker_embeddings=args.speaker, max_len_ratio=args.max_len_ratio)
    if args.task == "segmentation":
        return _segment(pipe, args)
    outputs = pipe(list(args.inputs), **kwargs)
    if args.task in ("tts", "vc", "se"):
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for i, (wav, rate) in enumerate(outputs):
            path = save_audio(out / f"{i:04d}.wav", wav, rate)
            print(f"{args.inputs[i]}\t{path}")
    else:
        for item, result in zip(args.inputs, outputs):
            print(f"{item}\t{result['label']}\t{result['score']:.4f}" if isinstance(result, dict)
                  else f"{item}\t{result}")
    return 0


def _segment(pipe, args: argparse.Namespace) -> int:
    """``mmseq infer segmentation RGB... [--depth D...]``: one overlay PNG per image in --out, and its path."""
    if args.depth and len(args.depth) != len(args.inputs):
        raise InputError(f"segmentation: give one --depth per image ({len(args.inputs)}), got {len(args.depth)}")
    results = pipe(list(args.inputs), args.depth or None, mode=args.mode, size=args.size, window=args.window,
                   stride=args.stride, depth_encoding=args.depth_encoding, max_depth=args.max_depth,
                   depth_scale=args.depth_scale, out=args.out)
    for item, result in zip(args.inputs, results):
        print(f"{item}\t{result['overlay']}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="run a model on files (audio tasks) or texts (tts)")
    p.add_argument("task", choices=sorted(PIPELINES))
    p.add_argument("inputs", nargs="+", help="audio files, texts for tts, images for image-to-text / vqa")
    p.add_argument("--model", required=True, help="checkpoint directory (mmseq or transformers)")
    p.add_argument("--vocoder", help="HiFi-GAN checkpoint for speech output (default: Griffin-Lim)")
    p.add_argument("--speaker", help="x-vector .npy for tts / vc")
    p.add_argument("--question", action="append", help="vqa: the question (one for all images, or one per image)")
    p.add_argument("--prompt", help="image-to-text: the text after the image (default 'A picture of')")
    p.add_argument("--out", default="infer_out", help="folder for output wavs")
    p.add_argument("--device", default=None)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-beams", type=int, default=1)
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--max-len-ratio", type=float, default=20.0)
    seg = p.add_argument_group("segmentation")
    seg.add_argument("--depth", action="append", help="depth per image (.npy metres, or PNG x --depth-scale)")
    seg.add_argument("--mode", default="whole", choices=["whole", "sliding"])
    seg.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="whole mode: resize to this first")
    seg.add_argument("--window", type=int, nargs=2, metavar=("H", "W"), default=[384, 768])
    seg.add_argument("--stride", type=int, nargs=2, metavar=("H", "W"), help="sliding mode (default: half a window)")
    seg.add_argument("--depth-encoding", default="linear", choices=["linear", "inverse", "jet", "hha"])
    seg.add_argument("--max-depth", type=float, default=60.0)
    seg.add_argument("--depth-scale", type=float, default=1.0, help="metres per PNG depth value")
    p.set_defaults(run=_run)
