"""``mmseq data synth text --out FILE --sentences N``: unpaired English text from the synthetic sentence grammar
(:mod:`mmseq.data.synth.sentences`), one sentence per line -- the text half of SpeechT5 pre-training on the synthetic
corpus. A real corpus (LibriSpeech's LM text, for instance) is the same format: a plain text file of one sentence
per line, which the pre-training task reads as it is.

Sentences that appear as the ``text`` of a manifest given with ``--exclude`` (a speech corpus' test transcripts) are
skipped, so text pre-training never sees the sentences its fine-tuned models are scored on. A seed fixes the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mmseq.atomic import atomic_write_text
from mmseq.data.manifest import read_manifest
from mmseq.data.synth.sentences import generate_sentence
from mmseq.errors import ConfigError

# The speech corpus seeds its generators with lists ([seed, split, ...]); this stream is seeded apart from them.
STREAM = 7


def generate_text(sentences: int, seed: int = 0, exclude: set[str] | None = None) -> list[str]:
    """``sentences`` English sentences of the grammar, none of them in ``exclude``."""
    if sentences < 1:
        raise ConfigError(f"--sentences must be >= 1, got {sentences}")
    rng = np.random.default_rng([seed, STREAM])
    exclude = exclude or set()
    out: list[str] = []
    tries = 0
    while len(out) < sentences:
        tries += 1
        if tries > 20 * sentences + 1000:
            raise ConfigError(f"the grammar gave only {len(out)} sentences outside --exclude in {tries} draws")
        en, _, _ = generate_sentence(rng)
        if en not in exclude:
            out.append(en)
    return out


def write_text(out: str | os.PathLike, sentences: int, seed: int = 0,
               exclude_manifests: list[str] | None = None) -> dict[str, int]:
    """Write the text file (atomically); returns counts of sentences, words and excluded transcripts."""
    excluded = {u.text for m in exclude_manifests or [] for u in read_manifest(m) if u.text}
    lines = generate_text(sentences, seed, excluded)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return {"sentences": len(lines), "words": sum(len(line.split()) for line in lines), "excluded": len(excluded)}
