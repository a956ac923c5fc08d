"""Synthetic corpora that mmseq generates offline: ``mmseq data synth speech``.

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
