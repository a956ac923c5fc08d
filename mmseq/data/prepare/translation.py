"""Speech translation: MuST-C.

Layout (``--root`` is the MuST-C release folder holding ``en-de/``, or the ``en-de`` folder itself)::

    en-de/data/<split>/wav/ted_<talk>.wav                  one file per TED talk
    en-de/data/<split>/txt/<split>.yaml                    one segment per entry:
        - {duration: 3.5, offset: 16.82, rW: 9, uW: 0, speaker_id: spk.1, wav: ted_1.wav}
    en-de/data/<split>/txt/<split>.en, <split>.de          one line per segment, in the same order

with splits ``train``, ``dev``, ``tst-COMMON`` and ``tst-HE``. Each segment becomes one utterance whose
``audio`` is the talk's file; the segment's position in it is kept in ``extra`` as ``start`` and ``end``
(seconds) and ``duration`` is the segment's length, so a loader crops ``[start, end)`` from the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmseq.data.prepare.common import progress, register_preparer, require_dir, require_file
from mmseq.errors import InputError

MUSTC_SPLITS = ("train", "dev", "tst-COMMON", "tst-HE")


def _mustc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pair", default="en-de", help="language pair folder (default: en-de)")
    p.add_argument("--splits", default=None, help="comma-separated splits (default: every one found)")


def _load_yaml(path: Path) -> list[dict]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        with open(path, encoding="utf-8") as f:
            segments = yaml.load(f, Loader=loader)
    except yaml.YAMLError as e:
        raise InputError(f"{path}: not valid YAML ({e})") from None
    if not isinstance(segments, list):
        raise InputError(f"{path}: expected a list of segments")
    return segments


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@register_preparer("mustc", "MuST-C: <pair>/data/<split>/txt/<split>.{yaml,en,de} + wav/", _mustc_arguments)
def prepare_mustc(root: str, out: str, pair: str = "en-de", splits: str | None = None) -> dict[str, list[dict]]:
    """Manifests for one MuST-C language pair; one utterance per segment.

    Args:
        root: The MuST-C folder (holding ``<pair>/``) or the pair folder itself.
        out: Output folder (unused here).
        pair: Language pair, ``"<source>-<target>"``.
        splits: Comma-separated split names, default every split folder found.

    Returns:
        Split name -> records with ``id`` (``ted_1_0``: talk and segment index), ``audio`` (the talk),
        ``duration`` (the segment), ``text`` (source), ``translation`` (target), ``speaker``, ``start``, ``end``.
    """
    source, _, target = pair.partition("-")
    if not target:
        raise InputError(f"--pair must look like 'en-de', got {pair!r}")
    root_dir = require_dir(Path(root).resolve(), "MuST-C root")
    pair_dir = root_dir if root_dir.name == pair and (root_dir / "data").is_dir() else root_dir / pair
    data_dir = require_dir(pair_dir / "data", f"MuST-C {pair} data folder")
    names = [s.strip() for s in splits.split(",") if s.strip()] if splits else \
        [s for s in MUSTC_SPLITS if (data_dir / s).is_dir()]  # fmt: skip
    if not names:
        raise InputError(f"no MuST-C split folders ({', '.join(MUSTC_SPLITS)}) under {data_dir}")
    result: dict[str, list[dict]] = {}
    for split in names:
        split_dir = require_dir(data_dir / split, "MuST-C split folder")
        txt = split_dir / "txt"
        segments = _load_yaml(require_file(txt / f"{split}.yaml", "MuST-C segment file"))
        src = _lines(require_file(txt / f"{split}.{source}", "MuST-C source transcript"))
        tgt = _lines(require_file(txt / f"{split}.{target}", "MuST-C target translation"))
        if not len(segments) == len(src) == len(tgt):
            raise InputError(f"{txt}: {split}.yaml has {len(segments)} segments but {split}.{source} has {len(src)} "
                             f"and {split}.{target} has {len(tgt)} lines")  # fmt: skip
        records, per_talk, checked = [], {}, set()
        for i, seg in enumerate(progress(segments, f"mustc {split}")):
            try:
                wav, offset, duration = seg["wav"], float(seg["offset"]), float(seg["duration"])
            except (KeyError, TypeError, ValueError) as e:
                raise InputError(f"{txt / f'{split}.yaml'}: segment {i} lacks wav/offset/duration ({e})") from None
            audio = split_dir / "wav" / wav
            if wav not in checked:
                require_file(audio, f"talk audio of segment {i} in {split}.yaml")
                checked.add(wav)
            talk = Path(wav).stem
            index = per_talk.get(talk, 0)
            per_talk[talk] = index + 1
            if duration <= 0:
                continue  # a handful of zero-length segments exist; nothing to hear
            records.append({"id": f"{talk}_{index}", "audio": str(audio), "duration": round(duration, 4),
                            "text": src[i].strip(), "translation": tgt[i].strip(),
                            "speaker": str(seg.get("speaker_id", talk)), "start": round(offset, 4),
                            "end": round(offset + duration, 4)})  # fmt: skip
        result[split] = records
    return result
