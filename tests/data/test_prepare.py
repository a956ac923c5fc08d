"""Corpus preparers: each reads a tiny fixture written in the corpus's official layout."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmseq.cli import main
from mmseq.data.manifest import read_manifest
from mmseq.data.prepare import PREPARERS, prepare_corpus
from mmseq.errors import ConfigError, InputError

SR = 16000


def tone(path: Path, seconds: float, sr: int = SR, freq: float = 220.0) -> Path:
    """Write a short sine (wav or flac by suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * sr)) / sr
    sf.write(str(path), 0.1 * np.sin(2 * np.pi * freq * t), sr)
    return path


def read(out: Path, split: str) -> list[dict]:
    """Manifest lines as dicts, after checking that the shared reader accepts the file and its paths."""
    for u in read_manifest(out / f"{split}.jsonl"):
        assert Path(u.audio).is_file(), u.audio
        assert u.target_audio is None or Path(u.target_audio).is_file()
    return [json.loads(line) for line in (out / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()]


def test_every_family_is_registered():
    assert set(PREPARERS) == {"librispeech", "libritts", "vctk", "cmu_arctic", "voxceleb1", "speech_commands",
                              "fluent_commands", "slurp", "mustc", "noisy_clean"}  # fmt: skip
    with pytest.raises(ConfigError, match="librispeech"):
        prepare_corpus("librispeeh", "x", "y")  # the message suggests the closest name


@pytest.mark.parametrize("name", sorted(PREPARERS))
def test_a_missing_root_is_named(tmp_path, name):
    missing = tmp_path / "no_such_corpus"
    with pytest.raises(InputError, match="no_such_corpus"):
        prepare_corpus(name, str(missing), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------------------- LibriSpeech
def librispeech(root: Path) -> Path:
    for split, spk, chapter, n in (("dev-clean", "84", "121123", 2), ("test-clean", "1089", "134686", 1)):
        folder = root / split / spk / chapter
        lines = []
        for i in range(n):
            uid = f"{spk}-{chapter}-{i:04d}"
            tone(folder / f"{uid}.flac", 0.5 + 0.25 * i)
            lines.append(f"{uid} GO DO YOU HEAR {i}")
        (folder / f"{spk}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech(tmp_path):
    root, out = librispeech(tmp_path / "LibriSpeech"), tmp_path / "out"
    assert prepare_corpus("librispeech", str(root), str(out)) == {"dev-clean": 2, "test-clean": 1}
    dev = read(out, "dev-clean")
    assert [r["id"] for r in dev] == ["84-121123-0000", "84-121123-0001"]
    assert dev[1]["text"] == "GO DO YOU HEAR 1" and dev[1]["speaker"] == "84"
    assert dev[1]["duration"] == pytest.approx(0.75, abs=1e-3)
    assert dev[0]["audio"] == "../LibriSpeech/dev-clean/84/121123/84-121123-0000.flac"
    assert read(out, "test-clean")[0]["extra"] == {"chapter": "134686"}


def test_librispeech_errors_name_what_is_missing(tmp_path):
    with pytest.raises(InputError, match="nowhere"):
        prepare_corpus("librispeech", str(tmp_path / "nowhere"), str(tmp_path / "out"))
    root = librispeech(tmp_path / "LibriSpeech")
    (root / "dev-clean/84/121123/84-121123-0001.flac").unlink()
    with pytest.raises(InputError, match="84-121123-0001.flac"):
        prepare_corpus("librispeech", str(root), str(tmp_path / "out"))
    with pytest.raises(InputError, match="train-other-500"):
        prepare_corpus("librispeech", str(root), str(tmp_path / "out"), splits="train-other-500")


def test_libritts_normalized_and_original_text(tmp_path):
    folder = tmp_path / "LibriTTS" / "dev-clean" / "3081" / "166546"
    stem = "3081_166546_000028_000002"
    tone(folder / f"{stem}.wav", 0.4, sr=24000)
    (folder / f"{stem}.normalized.txt").write_text("Mister Smith paid ten dollars.")
    (folder / f"{stem}.original.txt").write_text("Mr. Smith paid $10.")
    out = tmp_path / "out"
    prepare_corpus("libritts", str(tmp_path / "LibriTTS"), str(out))
    [r] = read(out, "dev-clean")
    assert (r["id"], r["speaker"], r["text"]) == (stem, "3081", "Mister Smith paid ten dollars.")
    assert r["duration"] == pytest.approx(0.4, abs=1e-3)
    prepare_corpus("libritts", str(tmp_path / "LibriTTS"), str(out), text="original")
    assert read(out, "dev-clean")[0]["text"] == "Mr. Smith paid $10."
    (folder / f"{stem}.normalized.txt").unlink()
    with pytest.raises(InputError, match="normalized transcript"):
        prepare_corpus("libritts", str(tmp_path / "LibriTTS"), str(out))


# ------------------------------------------------------------------------------------------------------ VCTK
@pytest.mark.parametrize("version", ["0.92", "0.80"])
def test_vctk_splits_by_speaker(tmp_path, version):
    root = tmp_path / "VCTK"
    for k, spk in enumerate(["p225", "p226", "p227", "p228", "p229", "p230"]):
        for n in (1, 2):
            uid = f"{spk}_{n:03d}"
            if version == "0.92":
                tone(root / "wav48_silence_trimmed" / spk / f"{uid}_mic1.flac", 0.3)
                tone(root / "wav48_silence_trimmed" / spk / f"{uid}_mic2.flac", 0.3)
            else:
                tone(root / "wav48" / spk / f"{uid}.wav", 0.3)
            if spk != "p226" or n == 1:  # one utterance without transcript
                (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
                (root / "txt" / spk / f"{uid}.txt").write_text(f"Please call Stella {k}.\n")
    out = tmp_path / "out"
    counts = prepare_corpus("vctk", str(root), str(out))
    assert counts == {"train": 3, "dev": 4, "test": 4}
    assert {r["speaker"] for r in read(out, "test")} == {"p229", "p230"}
    assert {r["speaker"] for r in read(out, "dev")} == {"p227", "p228"}
    train = read(out, "train")
    assert [r["id"] for r in train] == ["p225_001", "p225_002", "p226_001"]
    assert train[0]["text"] == "Please call Stella 0."
    counts = prepare_corpus("vctk", str(root), str(out), test_speakers="p225", dev_speakers="p226")
    assert counts == {"train": 8, "dev": 1, "test": 2}
    with pytest.raises(InputError, match="p999"):
        prepare_corpus("vctk", str(root), str(out), test_speakers="p999")
    with pytest.raises(InputError, match="transcript folder"):
        prepare_corpus("vctk", str(tmp_path), str(out))


# ------------------------------------------------------------------------------------------------ CMU ARCTIC
def test_cmu_arctic_splits_by_prompt_across_speakers(tmp_path):
    prompts = [f"arctic_a{i:04d}" for i in range(1, 7)]
    for spk in ("bdl", "slt"):
        voice = tmp_path / f"cmu_us_{spk}_arctic"
        (voice / "etc").mkdir(parents=True)
        lines = [f'( {p} "Author of the danger trail, Philip Steels, etc {i}." )' for i, p in enumerate(prompts)]
        (voice / "etc" / "txt.done.data").write_text("\n".join(lines) + "\n")
        for p in prompts:
            tone(voice / "wav" / f"{p}.wav", 0.2)
    out = tmp_path / "out"
    assert prepare_corpus("cmu_arctic", str(tmp_path), str(out), dev_count=1, test_count=2) == \
        {"train": 6, "dev": 2, "test": 4}  # fmt: skip
    test = read(out, "test")
    assert [r["id"] for r in test] == ["bdl_arctic_a0005", "bdl_arctic_a0006", "slt_arctic_a0005", "slt_arctic_a0006"]
    assert test[0]["text"] == "Author of the danger trail, Philip Steels, etc 4." and test[0]["speaker"] == "bdl"
    assert test[0]["extra"]["text_id"] == test[2]["extra"]["text_id"] == "arctic_a0005"
    # one voice folder as root works too; a missing prompt file is named
    assert prepare_corpus("cmu_arctic", str(tmp_path / "cmu_us_slt_arctic"), str(out), dev_count=0, test_count=0) == \
        {"train": 6, "dev": 0, "test": 0}  # fmt: skip
    (tmp_path / "cmu_us_bdl_arctic" / "etc" / "txt.done.data").unlink()
    with pytest.raises(InputError, match="txt.done.data"):
        prepare_corpus("cmu_arctic", str(tmp_path), str(out))


# ------------------------------------------------------------------------------------------------- VoxCeleb1
def test_voxceleb1_identification_split(tmp_path):
    lines = []
    for i, (spk, video, n, split) in enumerate([("id10001", "1zcIwhmdeo4", "00001", 1), ("id10001", "1zcIwhmdeo4",
                                                "00002", 2), ("id10002", "C7k7C-PDvAA", "00001", 3),
                                               ("id10002", "C7k7C-PDvAA", "00002", 1)]):  # fmt: skip
        tone(tmp_path / "wav" / spk / video / f"{n}.wav", 0.3 + 0.1 * i)
        lines.append(f"{split} {spk}/{video}/{n}.wav")
    (tmp_path / "iden_split.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    assert prepare_corpus("voxceleb1", str(tmp_path), str(out)) == {"train": 2, "dev": 1, "test": 1}
    train = read(out, "train")
    assert [r["id"] for r in train] == ["id10001-1zcIwhmdeo4-00001", "id10002-C7k7C-PDvAA-00002"]
    assert [r["speaker"] for r in train] == ["id10001", "id10002"] and "text" not in train[0]
    assert read(out, "test")[0]["duration"] == pytest.approx(0.5, abs=1e-3)
    (tmp_path / "wav/id10002/C7k7C-PDvAA/00001.wav").unlink()
    with pytest.raises(InputError, match="iden_split.txt:3"):
        prepare_corpus("voxceleb1", str(tmp_path), str(out))
    with pytest.raises(InputError, match="split file"):
        prepare_corpus("voxceleb1", str(tmp_path), str(out), split_file=str(tmp_path / "none.txt"))


# ------------------------------------------------------------------------------------------- Speech Commands
def test_speech_commands_lists_and_background_noise(tmp_path):
    for word, files in {"yes": ["0a7c2a8d_nohash_0", "0a7c2a8d_nohash_1", "1b4c9b89_nohash_0"],
                        "no": ["0a7c2a8d_nohash_0", "9a69672b_nohash_2"]}.items():  # fmt: skip
        for f in files:
            tone(tmp_path / word / f"{f}.wav", 1.0)
    tone(tmp_path / "_background_noise_" / "white_noise.wav", 2.0)
    (tmp_path / "validation_list.txt").write_text("yes/1b4c9b89_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("no/9a69672b_nohash_2.wav\n")
    out = tmp_path / "out"
    assert prepare_corpus("speech_commands", str(tmp_path), str(out)) == {"train": 3, "dev": 1, "test": 1}
    train = read(out, "train")
    assert [r["id"] for r in train] == ["no_0a7c2a8d_nohash_0", "yes_0a7c2a8d_nohash_0", "yes_0a7c2a8d_nohash_1"]
    assert [(r["text"], r["speaker"]) for r in train][0] == ("no", "0a7c2a8d")
    assert read(out, "dev")[0]["speaker"] == "1b4c9b89" and read(out, "test")[0]["text"] == "no"
    (tmp_path / "testing_list.txt").unlink()
    with pytest.raises(InputError, match="testing_list.txt"):
        prepare_corpus("speech_commands", str(tmp_path), str(out))


# ------------------------------------------------------------------------------------ Fluent Speech Commands
def test_fluent_speech_commands(tmp_path):
    rows = {
        "train": [("2BqVo8kVB2Skwgyb", "0a3129c0-4474-11e9-a9a5-5dbec3b8816a", "Turn on the lights", "activate",
                   "lights", "none"),
                  ("2BqVo8kVB2Skwgyb", "0ee42a80-4474-11e9-a9a5-5dbec3b8816a", "Change language", "change language",
                   "none", "none")],
        "valid": [("4BrX8aDqK2cLZRYl", "1c2a4e70-45f2-11e9-8ec0-7bf21d1cfe30", "Heat up the kitchen", "increase",
                   "heat", "kitchen")],
        "test": [("7B4XmNppyrCK977p", "5a9f3c50-45f2-11e9-8ec0-7bf21d1cfe30", "Bring me my socks", "bring",
                  "socks", "none")],
    }  # fmt: skip
    for stem, items in rows.items():
        table = tmp_path / "data" / f"{stem}_data.csv"
        table.parent.mkdir(parents=True, exist_ok=True)
        with open(table, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["", "path", "speakerId", "transcription", "action", "object", "location"])
            for i, (spk, name, text, action, obj, loc) in enumerate(items):
                path = f"wavs/speakers/{spk}/{name}.wav"
                tone(tmp_path / path, 0.6)
                writer.writerow([i, path, spk, text, action, obj, loc])
    out = tmp_path / "out"
    assert prepare_corpus("fluent_commands", str(tmp_path), str(out)) == {"train": 2, "dev": 1, "test": 1}
    train = read(out, "train")
    assert train[0]["id"] == "2BqVo8kVB2Skwgyb_0a3129c0-4474-11e9-a9a5-5dbec3b8816a"
    assert (train[0]["text"], train[0]["intent"]) == ("Turn on the lights", "activate_lights_none")
    assert train[1]["intent"] == "change_language_none_none"
    assert train[1]["extra"]["slots"] == {"action": "change language", "object": "none", "location": "none"}
    [dev] = read(out, "dev")
    assert dev["intent"] == "increase_heat_kitchen" and dev["speaker"] == "4BrX8aDqK2cLZRYl"
    (tmp_path / "data" / "valid_data.csv").unlink()
    with pytest.raises(InputError, match="valid_data.csv"):
        prepare_corpus("fluent_commands", str(tmp_path), str(out))


# ----------------------------------------------------------------------------------------------------- SLURP
def test_slurp_recordings_intents_and_speakers(tmp_path):
    folder = tmp_path / "dataset" / "slurp"
    folder.mkdir(parents=True)
    entries = {
        "train": [{"slurp_id": 1, "sentence": "wake me up at five am this week", "intent": "alarm_set",
                   "scenario": "alarm", "action": "set", "tokens": [], "entities": [],
                   "recordings": [{"file": "audio-1490290433-headset.flac", "wer": 0.0, "ent_wer": 0.0,
                                   "status": "correct"},
                                  {"file": "audio-1490290433.flac", "wer": 0.1, "ent_wer": 0.0, "status": "correct"}]}],
        "devel": [{"slurp_id": 7, "sentence": "what is the weather", "intent": "weather_query", "scenario": "weather",
                   "action": "query", "recordings": [{"file": "audio-1501754435.flac"}]}],
        "test": [{"slurp_id": 9, "sentence": "olly play jazz", "intent": "play_music", "scenario": "play",
                  "action": "music", "recordings": [{"file": "audio-1502199858-headset.flac"}]}],
    }  # fmt: skip
    for stem, items in entries.items():
        (folder / f"{stem}.jsonl").write_text("".join(json.dumps(e) + "\n" for e in items))
        for e in items:
            for rec in e["recordings"]:
                tone(tmp_path / "slurp_real" / rec["file"], 0.5)
    meta = {"1": {"recordings": {"audio-1490290433-headset.flac": {"usrid": "MO-433", "ent_wer": 0.0}}}}
    (folder / "metadata.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    assert prepare_corpus("slurp", str(tmp_path), str(out)) == {"train": 2, "dev": 1, "test": 1}
    train = read(out, "train")
    assert [r["id"] for r in train] == ["audio-1490290433-headset", "audio-1490290433"]
    assert train[0]["speaker"] == "MO-433" and "speaker" not in train[1]
    assert train[0]["intent"] == "alarm_set" and train[0]["text"] == "wake me up at five am this week"
    assert train[0]["extra"] == {"scenario": "alarm", "action": "set", "slurp_id": 1}
    (tmp_path / "slurp_real" / "audio-1501754435.flac").unlink()
    with pytest.raises(InputError, match="audio-1501754435.flac"):
        prepare_corpus("slurp", str(tmp_path), str(out))


# ---------------------------------------------------------------------------------------------------- MuST-C
def test_mustc_segments_with_offsets(tmp_path):
    txt = tmp_path / "en-de" / "data" / "dev" / "txt"
    txt.mkdir(parents=True)
    tone(tmp_path / "en-de" / "data" / "dev" / "wav" / "ted_767.wav", 4.0)
    tone(tmp_path / "en-de" / "data" / "dev" / "wav" / "ted_769.wav", 3.0)
    (txt / "dev.yaml").write_text(
        "- {duration: 1.250000, offset: 0.500000, rW: 4, uW: 0, speaker_id: spk.767, wav: ted_767.wav}\n"
        "- {duration: 2.000000, offset: 1.900000, rW: 6, uW: 0, speaker_id: spk.767, wav: ted_767.wav}\n"
        "- {duration: 1.000000, offset: 0.250000, rW: 3, uW: 0, speaker_id: spk.769, wav: ted_769.wav}\n"
    )
    (txt / "dev.en").write_text("Thank you so much.\nIt's great to be here.\nHello.\n")
    (txt / "dev.de").write_text("Vielen Dank.\nEs ist toll, hier zu sein.\nHallo.\n")
    out = tmp_path / "out"
    assert prepare_corpus("mustc", str(tmp_path), str(out)) == {"dev": 3}
    dev = read(out, "dev")
    assert [r["id"] for r in dev] == ["ted_767_0", "ted_767_1", "ted_769_0"]
    assert dev[1]["text"] == "It's great to be here." and dev[1]["translation"] == "Es ist toll, hier zu sein."
    assert dev[1]["duration"] == 2.0 and dev[1]["extra"] == {"start": 1.9, "end": 3.9}
    assert dev[2]["speaker"] == "spk.769" and dev[0]["audio"].endswith("en-de/data/dev/wav/ted_767.wav")
    # the pair folder itself is accepted as root
    assert prepare_corpus("mustc", str(tmp_path / "en-de"), str(out)) == {"dev": 3}
    (txt / "dev.de").write_text("Vielen Dank.\n")
    with pytest.raises(InputError, match="dev.de has 1 lines"):
        prepare_corpus("mustc", str(tmp_path), str(out))
    (txt / "dev.de").unlink()
    with pytest.raises(InputError, match="dev.de"):
        prepare_corpus("mustc", str(tmp_path), str(out))


# ----------------------------------------------------------------------------------------------- noisy_clean
def test_noisy_clean_voicebank_demand_layout(tmp_path):
    for noisy, clean, names in (("noisy_trainset_28spk_wav", "clean_trainset_28spk_wav", ["p226_001", "p226_002"]),
                                ("noisy_testset_wav", "clean_testset_wav", ["p232_001"])):  # fmt: skip
        for name in names:
            tone(tmp_path / noisy / f"{name}.wav", 0.5, sr=48000, freq=300)
            tone(tmp_path / clean / f"{name}.wav", 0.5, sr=48000)
    (tmp_path / "trainset_28spk_txt").mkdir()
    (tmp_path / "trainset_28spk_txt" / "p226_001.txt").write_text("Please call Stella.\n")
    (tmp_path / "logfiles").mkdir()
    (tmp_path / "logfiles" / "log_testset.txt").write_text("p232_001 bus 2.5\n")
    out = tmp_path / "out"
    assert prepare_corpus("noisy_clean", str(tmp_path), str(out)) == {"train": 2, "test": 1}
    train = read(out, "train")
    assert train[0]["target_audio"] == "../clean_trainset_28spk_wav/p226_001.wav"
    assert train[0]["audio"] == "../noisy_trainset_28spk_wav/p226_001.wav"
    assert train[0]["text"] == "Please call Stella." and "text" not in train[1] and train[0]["speaker"] == "p226"
    [test] = read(out, "test")
    assert test["snr"] == 2.5 and test["extra"] == {"noise_type": "bus"}


def test_noisy_clean_generic_folders_and_unmatched_files(tmp_path):
    for name in ("a_1", "a_2"):
        tone(tmp_path / "mix" / f"{name}.flac", 0.3)
        tone(tmp_path / "ref" / f"{name}.flac", 0.3)
    out = tmp_path / "out"
    assert prepare_corpus("noisy_clean", str(tmp_path), str(out), noisy_dir="mix", clean_dir="ref", split="dev") == \
        {"dev": 2}  # fmt: skip
    assert read(out, "dev")[1]["target_audio"] == "../ref/a_2.flac"
    (tmp_path / "ref" / "a_2.flac").unlink()
    with pytest.raises(InputError, match="a_2.flac"):
        prepare_corpus("noisy_clean", str(tmp_path), str(out), noisy_dir="mix", clean_dir="ref")
    with pytest.raises(InputError, match="noisy speech folder"):
        prepare_corpus("noisy_clean", str(tmp_path), str(out))


# ------------------------------------------------------------------------------------------------------- CLI
def test_cli_prepare_writes_manifests_and_reports_errors_in_one_line(tmp_path, capsys):
    root, out = librispeech(tmp_path / "LibriSpeech"), tmp_path / "out"
    argv = ["data", "prepare", "librispeech", "--root", str(root), "--out", str(out), "--splits", "dev-clean"]
    assert main(argv) == 0
    assert "dev-clean: 2 utterances" in capsys.readouterr().out
    assert [p.name for p in out.iterdir()] == ["dev-clean.jsonl"]
    assert main(["data", "prepare", "vctk", "--root", str(tmp_path / "missing"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing" in err
