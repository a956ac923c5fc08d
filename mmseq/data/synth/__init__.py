"""Synthetic corpora that mmseq generates offline: ``mmseq data synth speech|points|captions|scenes``.

The speech corpus is built with eSpeak NG (see :mod:`mmseq.data.synth.speech`); its design is documented in
``data/README.md``.
"""

from __future__ import annotations

import argparse
import os

from mmseq.data.synth.speech import PROFILES, build_speech_corpus

__all__ = ["add_parser", "build_speech_corpus", "PROFILES"]


def _run_speech(args: argparse.Namespace) -> int:
    stats = build_speech_corpus(args.out, profile=args.profile, seed=args.seed, jobs=args.jobs,
                                overwrite=args.overwrite)  # fmt: skip
    for split, s in stats["splits"].items():
        print(f"{split}: {s['utterances']} utterances, {s['hours']:.3f} h, {s['speakers']} speakers, "
              f"{s['vc_pairs']} vc pairs, {s['se_mixtures']} se mixtures")  # fmt: skip
    print(f"wrote {args.out} in {stats['seconds_to_build']} s")
    return 0


def _run_points(args: argparse.Namespace) -> int:
    from mmseq.data.vision.synth_points import build_points  # imported here: vision costs seconds to import

    stats = build_points(args.out, profile=args.profile, seed=args.seed, jobs=args.jobs, overwrite=args.overwrite)
    for name, splits in stats["sets"].items():
        print(f"{name}: " + ", ".join(f"{split} {n}" for split, n in splits.items()))
    print(f"wrote {args.out} in {stats['seconds']} s")
    return 0


def _run_captions(args: argparse.Namespace) -> int:
    from mmseq.data.vision.synth_captions import build_captions  # imported here: vision costs seconds to import

    stats = build_captions(args.out, profile=args.profile, seed=args.seed, jobs=args.jobs, overwrite=args.overwrite)
    for split, s in stats["splits"].items():
        print(f"{split}: {s['images']} images, {s['captions']} captions, {s['questions']} questions, "
              f"domains {s['domains']}")  # fmt: skip
    print(f"wrote {args.out} in {stats['seconds_to_build']} s")
    return 0


def _run_scenes(args: argparse.Namespace) -> int:
    from mmseq.data.vision.synth_scenes import build_scenes  # imported here: vision costs seconds to import

    encodings = [e for e in (args.depth_encodings or "").split(",") if e]
    stats = build_scenes(args.out, profile=args.profile, seed=args.seed, jobs=args.jobs, encodings=encodings,
                         overwrite=args.overwrite)  # fmt: skip
    for split, s in stats["splits"].items():
        print(f"{split}: {s['frames']} frames, layouts {s['layouts']}, conditions {s['conditions']}")
    print(f"wrote {args.out} in {stats['seconds_to_build']} s")
    return 0


def _run_text(args: argparse.Namespace) -> int:
    from mmseq.data.synth.text import write_text

    stats = write_text(args.out, args.sentences, seed=args.seed, exclude_manifests=args.exclude)
    print(f"wrote {args.out}: {stats['sentences']} sentences, {stats['words']} words "
          f"({stats['excluded']} transcripts excluded)")
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``synth`` (with its ``speech`` corpus) under ``mmseq data``."""
    p = subparsers.add_parser("synth", help="generate a synthetic corpus offline")
    sub = p.add_subparsers(dest="synth_corpus", required=True, metavar="CORPUS")
    s = sub.add_parser("speech", help="speech with eSpeak NG: ASR/TTS/SLU/ST/VC/SE manifests, phone and word times")
    s.add_argument("--out", default="data/synth_speech", help="output folder (default: data/synth_speech)")
    s.add_argument("--profile", choices=sorted(PROFILES), default="quick", help="corpus size (default: quick)")
    s.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    s.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                   help="worker processes; the output does not depend on it (default: CPUs, at most 8)")  # fmt: skip
    s.add_argument("--overwrite", action="store_true", help="replace an earlier corpus in --out")
    s.set_defaults(run=_run_speech)
    s = sub.add_parser("text", help="unpaired English text from the sentence grammar, one sentence per line")
    s.add_argument("--out", required=True, help="the text file to write")
    s.add_argument("--sentences", type=int, required=True, help="number of sentences")
    s.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    s.add_argument("--exclude", nargs="*", default=[], metavar="MANIFEST",
                   help="leave out sentences that are the text of these manifests (e.g. the test split)")
    s.set_defaults(run=_run_text)
    s = sub.add_parser("points", help="point clouds in ShapeNet-55 / ModelNet40 h5 / ScanObjectNN PB_T50_RS layouts")
    s.add_argument("--out", default="data/synth_points", help="output folder (default: data/synth_points)")
    s.add_argument("--profile", choices=["tiny", "quick", "full"], default="quick", help="size (default: quick)")
    s.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
    s.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                   help="worker processes; the output does not depend on it (default: CPUs, at most 8)")  # fmt: skip
    s.add_argument("--overwrite", action="store_true", help="replace an earlier product in --out")
    s.set_defaults(run=_run_points)
    for name, helptext, run in (
        ("captions", "captioned images (COCO captions layout) and VQA (VQAv2 layout), compositional split",
         _run_captions),
        ("scenes", "RGB-D street and room scenes in Cityscapes' layout, adverse conditions, sensor depth",
         _run_scenes),
    ):  # fmt: skip
        s = sub.add_parser(name, help=helptext)
        s.add_argument("--out", default=f"data/synth_{name}", help=f"output folder (default: data/synth_{name})")
        s.add_argument("--profile", choices=["tiny", "quick", "full"], default="quick", help="size (default: quick)")
        s.add_argument("--seed", type=int, default=0, help="seed of every random choice (default: 0)")
        s.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                       help="worker processes; the output does not depend on it (default: CPUs, at most 8)")  # fmt: skip
        s.add_argument("--overwrite", action="store_true", help="replace an earlier product in --out")
        if name == "scenes":
            s.add_argument("--depth-encodings", default="", metavar="LIST",
                           help="also write the depth as 'jet' and/or 'hha' images, e.g. jet,hha (default: none)")
        s.set_defaults(run=run)
