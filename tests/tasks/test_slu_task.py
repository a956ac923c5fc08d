"""The seq2seq SLU task: its targets, the labels and rehearsal utterances it keeps, and its errors."""

import json

import numpy as np
import pytest
import soundfile as sf

from mmseq.errors import ConfigError
from mmseq.tasks.slu import SluConfig, build_slu, split_output

ROWS = [("u0", "activate_lights_none", "Turn on  the lights", "iot"), ("u1", "deactivate_lights_none", "lights off", "iot"),
        ("u2", "activate_music_none", "play music", "music"), ("u3", "activate_lights_none", "lights on", "iot")]


@pytest.fixture()
def corpus(tmp_path):
    sf.write(tmp_path / "a.wav", np.zeros(1600, dtype=np.float32), 16000)
    lines = [json.dumps({"id": i, "audio": "a.wav", "duration": 0.1, "text": t, "intent": y,
                         "extra": {"scenario": s}}) for i, y, t, s in ROWS]
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def decoded_targets(data, split):
    return [data.tokenizer.decode(t) for t in data.items[split].targets]


def test_targets_are_label_then_transcript(corpus):
    _, data = build_slu(SluConfig(corpus=str(corpus)))
    assert decoded_targets(data, "train")[0] == "activate_lights_none | turn on the lights"
    assert split_output("activate_lights_none | turn on the lights") == ("activate_lights_none", "turn on the lights")
    assert split_output("music") == ("music", "")
    _, labels_only = build_slu(SluConfig(corpus=str(corpus), target="label", label_field="scenario"))
    assert decoded_targets(labels_only, "train") == ["iot", "iot", "music", "iot"]


def test_keep_labels_rehearsal_and_test_labels(corpus):
    task, data = build_slu(SluConfig(corpus=str(corpus), keep_labels=["activate_lights_none"], rehearsal_ids=["u2"],
                                     test_labels=["activate_music_none", "activate_lights_none"]))
    assert [u.id for u in data.utterances["train"]] == ["u0", "u3", "u2"]
    assert [u.id for u in data.utterances["val"]] == ["u0", "u3"]
    assert [u.id for u in data.utterances["test"]] == ["u0", "u2", "u3"]
    assert task.info["rehearsal_utterances"] == 1
    # the vocabulary is the whole training split's, whatever is kept
    _, whole = build_slu(SluConfig(corpus=str(corpus)))
    assert len(data.tokenizer) == len(whole.tokenizer)


def test_bad_configs_are_named(corpus):
    with pytest.raises(ConfigError, match="keep_labels.*'weather'"):
        build_slu(SluConfig(corpus=str(corpus), keep_labels=["weather"]))
    with pytest.raises(ConfigError, match="rehearsal_ids.*'u9'"):
        build_slu(SluConfig(corpus=str(corpus), rehearsal_ids=["u9"]))
    with pytest.raises(ConfigError, match="u0: no label field 'slot'"):
        build_slu(SluConfig(corpus=str(corpus), label_field="slot"))
    with pytest.raises(ConfigError, match="task_args.target"):
        SluConfig(target="intent")
