"""Speech enhancement from paired folders: ``noisy_clean`` (VoiceBank-DEMAND and any corpus shaped like it).

Generic layout (``--root`` holds both folders; names set with ``--noisy-dir``/``--clean-dir``)::

    noisy/<name>.wav
    clean/<name>.wav         the same file names

VoiceBank-DEMAND is recognised when ``--noisy-dir`` is not given and ``--root`` holds its folders::

    noisy_trainset_28spk_wav/p226_001.wav   clean_trainset_28spk_wav/p226_001.wav   -> train
    noisy_testset_wav/p232_001.wav          clean_testset_wav/p232_001.wav          -> test
    trainset_28spk_txt/p226_001.txt, testset_txt/...                              (optional transcripts)
    log_trainset_28spk.txt, log_testset.txt  lines "p226_001 <noise> <snr>"        (optional; also under logfiles/)

(the 56-speaker training set is used when the 28-speaker one is absent). Each utterance has ``audio`` = the noisy
file, ``target_audio`` = the clean file, ``speaker`` = the name's prefix before ``_``, and when known ``text``,
``snr`` and the noise name (``noise_type`` in ``extra``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mmseq.data.prepare.common import AUDIO_SUFFIXES, audio_duration, progress, register_preparer, require_dir
from mmseq.errors import InputError

_VOICEBANK = {
    "train": [("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav", "trainset_28spk_txt", "log_trainset_28spk.txt"),
              ("noisy_trainset_56spk_wav", "clean_trainset_56spk_wav", "trainset_56spk_txt", "log_trainset_56spk.txt")],
    "test": [("noisy_testset_wav", "clean_testset_wav", "testset_txt", "log_testset.txt")],
}  # fmt: skip


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--noisy-dir", default=None,
                   help="noisy folder under --root (default: VoiceBank-DEMAND's folders if present, else noisy)")
    p.add_argument("--clean-dir", default="clean", help="clean folder under --root (default: clean)")
    p.add_argument("--text-dir", default=None, help="optional folder of <name>.txt transcripts under --root")
    p.add_argument("--split", default="train", help="split name of a generic pair (default: train)")


def _read_log(path: Path | None) -> dict[str, tuple[str, float]]:
    """``name -> (noise, snr)`` from a VoiceBank-DEMAND style log (``<name> <noise> <snr>`` per line)."""
    if path is None or not path.is_file():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 3:
            try:
                out[parts[0]] = (parts[1], float(parts[2]))
            except ValueError:
                continue
    return out


def pair_folders(noisy_dir: Path, clean_dir: Path, text_dir: Path | None = None,
                 log: dict[str, tuple[str, float]] | None = None) -> list[dict]:  # fmt: skip
    """Records for matching file names in ``noisy_dir`` and ``clean_dir``.

    Raises:
        InputError: A folder is missing, empty, or a noisy file has no clean twin (the first few are named).
    """
    noisy_dir = require_dir(noisy_dir, "noisy speech folder")
    clean_dir = require_dir(clean_dir, "clean speech folder")
    noisy = sorted(p for p in noisy_dir.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not noisy:
        raise InputError(f"no .wav/.flac files in {noisy_dir}")
    unmatched = [p.name for p in noisy if not (clean_dir / p.name).is_file()]
    if unmatched:
        raise InputError(f"{len(unmatched)} noisy file(s) in {noisy_dir} have no clean twin in {clean_dir}, "
                         f"e.g. {', '.join(unmatched[:3])}")  # fmt: skip
    log = log or {}
    records = []
    for audio in progress(noisy, f"noisy_clean {noisy_dir.name}"):
        record = {"id": audio.stem, "audio": str(audio), "duration": audio_duration(audio),
                  "speaker": audio.stem.split("_")[0], "target_audio": str(clean_dir / audio.name)}  # fmt: skip
        if text_dir is not None and (text_dir / f"{audio.stem}.txt").is_file():
            record["text"] = (text_dir / f"{audio.stem}.txt").read_text(encoding="utf-8").strip()
        if audio.stem in log:
            record["noise_type"], record["snr"] = log[audio.stem]
        records.append(record)
    return records


def _find_log(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / "logfiles" / name):
        if candidate.is_file():
            return candidate
    return None


@register_preparer("noisy_clean", "paired noisy/clean folders (VoiceBank-DEMAND recognised)", _arguments)
def prepare_noisy_clean(root: str, out: str, noisy_dir: str | None = None, clean_dir: str = "clean",
                        text_dir: str | None = None, split: str = "train") -> dict[str, list[dict]]:  # fmt: skip
    """Manifests for speech enhancement from noisy/clean folder pairs.

    Args:
        root: Folder holding the two folders.
        out: Output folder (unused here).
        noisy_dir: Noisy folder name; ``None`` recognises VoiceBank-DEMAND, else uses ``noisy``.
        clean_dir: Clean folder name (generic layout).
        text_dir: Optional transcript folder (generic layout).
        split: Split name of the generic pair.

    Returns:
        Split name -> records (``audio`` noisy, ``target_audio`` clean).
    """
    root_dir = require_dir(Path(root).resolve(), "noisy/clean root")
    if noisy_dir is None:
        splits: dict[str, list[dict]] = {}
        for name, candidates in _VOICEBANK.items():
            for noisy, clean, text, log in candidates:
                if (root_dir / noisy).is_dir():
                    text_path = root_dir / text if (root_dir / text).is_dir() else None
                    splits[name] = pair_folders(root_dir / noisy, root_dir / clean, text_path,
                                                _read_log(_find_log(root_dir, log)))  # fmt: skip
                    break
        if splits:
            return splits
        noisy_dir = "noisy"
    text_path = require_dir(root_dir / text_dir, "transcript folder") if text_dir else None
    return {split: pair_folders(root_dir / noisy_dir, root_dir / clean_dir, text_path)}
