"""Multi-speaker corpora for TTS, voice conversion and speaker identification: VCTK, CMU ARCTIC, VoxCeleb1.

VCTK 0.92 layout (``--root`` is ``VCTK-Corpus-0.92``)::

    wav48_silence_trimmed/p225/p225_001_mic1.flac   (and _mic2)
    txt/p225/p225_001.txt

The older VCTK-Corpus (0.80) keeps ``wav48/p225/p225_001.wav``. VCTK has no official split: speakers are held
out (``--dev-speakers``, ``--test-speakers``; by default the last four speakers with transcripts in sorted
order, two for dev and two for test). Utterances without a transcript (speaker p315) are left out.

CMU ARCTIC layout (``--root`` holds one or more ``cmu_us_<spk>_arctic`` folders, or is one)::

    cmu_us_bdl_arctic/wav/arctic_a0001.wav
    cmu_us_bdl_arctic/etc/txt.done.data      lines ( arctic_a0001 "Author of the danger trail, ..." )

All speakers read the same prompts, so the split is by prompt (the last ``--test-count`` prompts in sorted order
are test, the ``--dev-count`` before them dev); the prompt id is kept as ``text_id`` for pairing speakers.

VoxCeleb1 identification layout (``--root`` holds ``wav/`` and ``iden_split.txt``)::

    wav/id10001/1zcIwhmdeo4/00001.wav
    iden_split.txt          lines "1 id10001/1zcIwhmdeo4/00001.wav"   (1 = train, 2 = dev, 3 = test)
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from mmseq.data.prepare.common import audio_duration, progress, register_preparer, require_dir, require_file
from mmseq.errors import InputError


# ------------------------------------------------------------------------------------------------------ VCTK
def _vctk_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mic", choices=("mic1", "mic2"), default="mic1", help="VCTK 0.92 microphone (default mic1)")
    p.add_argument("--dev-speakers", default=None, help="comma-separated dev speakers (default: 2 held out)")
    p.add_argument("--test-speakers", default=None, help="comma-separated test speakers (default: 2 held out)")


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@register_preparer("vctk", "VCTK 0.92 (wav48_silence_trimmed/*.flac) or 0.80 (wav48/*.wav) + txt/", _vctk_arguments)
def prepare_vctk(root: str, out: str, mic: str = "mic1", dev_speakers: str | None = None,
                 test_speakers: str | None = None) -> dict[str, list[dict]]:  # fmt: skip
    """Manifests for VCTK, split by speaker.

    Args:
        root: The VCTK folder (with ``txt/`` and ``wav48_silence_trimmed/`` or ``wav48/``).
        out: Output folder (unused here).
        mic: Microphone of VCTK 0.92 (``mic1`` or ``mic2``).
        dev_speakers: Comma-separated dev speakers.
        test_speakers: Comma-separated test speakers.

    Returns:
        ``{"train", "dev", "test"}`` -> records with ``id`` (``p225_001``), ``audio``, ``duration``, ``text`` and
        ``speaker``.
    """
    root_dir = require_dir(Path(root).resolve(), "VCTK root")
    txt_dir = require_dir(root_dir / "txt", "VCTK transcript folder")
    if (root_dir / "wav48_silence_trimmed").is_dir():
        wav_dir, pattern = root_dir / "wav48_silence_trimmed", re.compile(rf"^(p\d+|s\d+)_(\d+)_{mic}\.flac$")
    elif (root_dir / "wav48").is_dir():
        wav_dir, pattern = root_dir / "wav48", re.compile(r"^(p\d+|s\d+)_(\d+)\.wav$")
    else:
        raise InputError(f"VCTK audio folder not found: neither {root_dir}/wav48_silence_trimmed nor {root_dir}/wav48")
    by_speaker: dict[str, list[dict]] = {}
    for audio in progress(sorted(wav_dir.glob("*/*")), "vctk"):
        match = pattern.match(audio.name)
        if not match:
            continue
        speaker, number = match.groups()
        uid = f"{speaker}_{number}"
        transcript = txt_dir / speaker / f"{uid}.txt"
        if not transcript.is_file():
            continue  # p315 and a few others have audio but no text
        by_speaker.setdefault(speaker, []).append({
            "id": uid, "audio": str(audio), "duration": audio_duration(audio),
            "text": transcript.read_text(encoding="utf-8").strip(), "speaker": speaker,
        })  # fmt: skip
    if not by_speaker:
        raise InputError(f"no VCTK utterances with transcripts under {wav_dir} and {txt_dir}")
    speakers = sorted(by_speaker)
    dev, test = _names(dev_speakers), _names(test_speakers)
    if not dev and not test:
        if len(speakers) < 5:
            raise InputError(f"VCTK under {root_dir} has {len(speakers)} speakers; name --dev/--test-speakers")
        dev, test = speakers[-4:-2], speakers[-2:]
    for name in dev + test:
        if name not in by_speaker:
            raise InputError(f"VCTK speaker {name!r} not found under {wav_dir}")
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for speaker in speakers:
        split = "dev" if speaker in dev else "test" if speaker in test else "train"
        splits[split].extend(by_speaker[speaker])
    return splits


# ------------------------------------------------------------------------------------------------ CMU ARCTIC
def _arctic_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dev-count", type=int, default=50, help="prompts held out for dev (default 50)")
    p.add_argument("--test-count", type=int, default=50, help="prompts held out for test (default 50)")


_ARCTIC_LINE = re.compile(r'^\(\s*(\S+)\s+"(.*)"\s*\)\s*$')


def read_arctic_prompts(path: Path) -> dict[str, str]:
    """Parse ``etc/txt.done.data``: ``( arctic_a0001 "text" )`` per line -> ``{prompt id: text}``."""
    prompts = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        match = _ARCTIC_LINE.match(line.strip())
        if not match:
            raise InputError(f'{path}:{number}: expected ( arctic_a0001 "text" ), got {line!r}')
        prompts[match.group(1)] = match.group(2)
    return prompts


@register_preparer("cmu_arctic", "CMU ARCTIC: cmu_us_<spk>_arctic/wav/*.wav + etc/txt.done.data", _arctic_arguments)
def prepare_cmu_arctic(root: str, out: str, dev_count: int = 50, test_count: int = 50) -> dict[str, list[dict]]:
    """Manifests for CMU ARCTIC, split by prompt so every split has parallel speakers.

    Args:
        root: A folder of ``cmu_us_<spk>_arctic`` folders, or one of them.
        out: Output folder (unused here).
        dev_count: Prompts (in sorted order, before the test ones) that form dev.
        test_count: Last prompts in sorted order that form test.

    Returns:
        ``{"train", "dev", "test"}`` -> records with ``id`` (``bdl_arctic_a0001``), ``audio``, ``duration``,
        ``text``, ``speaker`` and ``text_id`` (the prompt id).
    """
    root_dir = require_dir(Path(root).resolve(), "CMU ARCTIC root")
    voice_dirs = [root_dir] if (root_dir / "etc").is_dir() else sorted(root_dir.glob("cmu_us_*_arctic"))
    if not voice_dirs:
        raise InputError(f"no cmu_us_<spk>_arctic folders under {root_dir}")
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    for voice_dir in voice_dirs:
        match = re.match(r"cmu_us_(\w+?)_arctic", voice_dir.name)
        speaker = match.group(1) if match else voice_dir.name
        prompts = read_arctic_prompts(require_file(voice_dir / "etc" / "txt.done.data", "CMU ARCTIC prompt file"))
        require_dir(voice_dir / "wav", "CMU ARCTIC wav folder")
        ordered = sorted(prompts)
        test = set(ordered[len(ordered) - test_count :]) if test_count else set()
        dev = set(ordered[max(0, len(ordered) - test_count - dev_count) : len(ordered) - test_count])
        for prompt in progress(ordered, f"arctic {speaker}"):
            audio = voice_dir / "wav" / f"{prompt}.wav"
            if not audio.is_file():
                continue  # a few prompts were not recorded by every speaker
            split = "test" if prompt in test else "dev" if prompt in dev else "train"
            splits[split].append({"id": f"{speaker}_{prompt}", "audio": str(audio), "duration": audio_duration(audio),
                                  "text": prompts[prompt], "speaker": speaker, "text_id": prompt})  # fmt: skip
    return splits


# ------------------------------------------------------------------------------------------------- VoxCeleb1
def _voxceleb_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--split-file", default=None, help="iden_split.txt (default: <root>/iden_split.txt)")


@register_preparer("voxceleb1", "VoxCeleb1 identification: wav/idXXXXX/<video>/*.wav + iden_split.txt",
                   _voxceleb_arguments)  # fmt: skip
def prepare_voxceleb1(root: str, out: str, split_file: str | None = None) -> dict[str, list[dict]]:
    """Manifests for the VoxCeleb1 speaker-identification split.

    Args:
        root: Folder holding ``wav/``.
        out: Output folder (unused here).
        split_file: ``iden_split.txt``; default ``<root>/iden_split.txt``.

    Returns:
        ``{"train", "dev", "test"}`` (from split numbers 1, 2, 3) -> records with ``id``
        (``id10001-1zcIwhmdeo4-00001``), ``audio``, ``duration`` and ``speaker``.
    """
    root_dir = require_dir(Path(root).resolve(), "VoxCeleb1 root")
    wav_dir = require_dir(root_dir / "wav", "VoxCeleb1 wav folder")
    split_path = require_file(Path(split_file) if split_file else root_dir / "iden_split.txt", "VoxCeleb1 split file")
    names = {"1": "train", "2": "dev", "3": "test"}
    splits: dict[str, list[dict]] = {"train": [], "dev": [], "test": []}
    lines = split_path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(progress(lines, "voxceleb1"), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or parts[0] not in names or parts[1].count("/") != 2:
            raise InputError(f"{split_path}:{number}: expected '<1|2|3> idXXXXX/<video>/<nnnnn>.wav', got {line!r}")
        audio = require_file(wav_dir / parts[1], f"audio listed in {split_path}:{number}")
        speaker = parts[1].split("/")[0]
        uid = parts[1].rsplit(".", 1)[0].replace("/", "-")
        splits[names[parts[0]]].append({"id": uid, "audio": str(audio), "duration": audio_duration(audio),
                                        "speaker": speaker})  # fmt: skip
    return splits
