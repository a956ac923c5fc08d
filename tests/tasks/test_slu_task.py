"""The seq2seq SLU task: its targets, the labels and rehearsal utterances it keeps, and its errors."""

import json

import numpy as np
import torch
import pytest
import soundfile as sf

from mmseq.errors import ConfigError
from mmseq.tasks.slu import SluConfig, build_slu, split_output

ROWS = [("u0", "activate_lights_none", "Turn on  the lights", "iot"),
        ("u1", "deactivate_lights_none", "lights off", "iot"),
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
    return [data.tokenizer.decode(t[0]) for t in data.items[split].targets]


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


def tiny_model(vocab_size, seed):
    import mmseq

    torch.manual_seed(seed)
    return mmseq.create_model("speecht5_asr_tiny", vocab_size=vocab_size, projection_dim=8, dropout=0.0,
                              attention_dropout=0.0, activation_dropout=0.0, positional_dropout=0.0,
                              encoder_layerdrop=0.0, decoder_layerdrop=0.0, mask_time_prob=0.0)


def test_continual_terms_equal_their_formulas(corpus, tmp_path):
    import mmseq
    from mmseq.nn.contrastive import multimodal_contrastive_loss, nspt_loss
    from mmseq.tasks.slu import continual_terms

    _, probe = build_slu(SluConfig(corpus=str(corpus)))
    vocab = len(probe.tokenizer)
    mmseq.save_pretrained(tiny_model(vocab, 1), tmp_path / "teacher")
    cfg = SluConfig(corpus=str(corpus), keep_labels=["activate_lights_none"], rehearsal_ids=["u1", "u2"],
                    teacher=str(tmp_path / "teacher"), audio_kd=1.0, token_kd=1.0, kd_temperature=2.0, nspt=0.5,
                    mm=0.25, mm_on="all")
    task, data = build_slu(cfg)
    batch = task.collate([task.train_set[i] for i in range(len(task.train_set))])
    assert batch["rehearsal"].tolist() == [False, False, True, True]
    assert batch["label"].tolist() == [0, 0, 2, 1]  # sorted labels: activate_lights, activate_music, deactivate
    student, teacher = tiny_model(vocab, 0), mmseq.load(tmp_path / "teacher")
    task.prepare_model(student)
    out = student(batch["audio"], batch["audio_lengths"], batch["dec_in"], batch["target_lengths"])
    terms = continual_terms(student, out, teacher.eval(), batch, cfg)
    with torch.no_grad():
        t_out = teacher(batch["audio"], batch["audio_lengths"], batch["dec_in"], batch["target_lengths"])
    terms = {k: v.detach() for k, v in terms.items()}
    enc, logits = out.encoder_hidden.detach(), out.outputs.detach()
    rows = [2, 3]  # rehearsal items (kd_on: rehearsal)
    frames = [(r, f) for r in rows for f in range(int(out.encoder_lengths[r]))]
    mse = sum(float((enc[r, f] - t_out.encoder_hidden[r, f]).pow(2).mean()) for r, f in frames)
    assert float(terms["audio_kd"]) == pytest.approx(mse / len(frames), rel=1e-4)
    tokens = [(r, k) for r in rows for k in range(int(batch["target_lengths"][r]))]
    kl = 0.0
    for r, k in tokens:
        p_t = torch.softmax(t_out.outputs[r, k] / 2.0, -1)
        kl += float((p_t * (p_t.log() - torch.log_softmax(logits[r, k] / 2.0, -1))).sum())
    assert float(terms["token_kd"]) == pytest.approx(4.0 * kl / len(tokens), rel=1e-4)
    with torch.no_grad():
        audio = student.projection_heads.audio(enc, out.encoder_lengths)
        text = student.projection_heads.text(student.decoder_prenet.embed_tokens(batch["target"]),
                                             batch["target_lengths"] - 1)
    t_audio = teacher.projection_heads.audio(t_out.encoder_hidden, t_out.encoder_lengths)
    assert float(terms["nspt"]) == pytest.approx(float(nspt_loss(audio, t_audio, batch["label"],
                                                                  batch["rehearsal"])), rel=1e-5)
    assert float(terms["mm"]) == pytest.approx(float(multimodal_contrastive_loss(audio, text)), rel=1e-5)
    # the task's loss is CE plus the weighted terms, and their gradients reach the projection heads
    total, metrics = task.loss(student, batch)
    expected = (metrics["ce"] + 1.0 * metrics["audio_kd"] + metrics["token_kd"] + 0.5 * metrics["nspt"]
                + 0.25 * metrics["mm"])
    assert float(total.detach()) == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert student.projection_heads.text_head[0].weight.grad.abs().sum() > 0


def test_a_teacher_equal_to_the_student_distils_nothing(corpus, tmp_path):
    import mmseq
    from mmseq.tasks.slu import continual_terms

    _, probe = build_slu(SluConfig(corpus=str(corpus)))
    student = tiny_model(len(probe.tokenizer), 0)
    mmseq.save_pretrained(student, tmp_path / "same")
    cfg = SluConfig(corpus=str(corpus), rehearsal_ids=[], keep_labels=None, teacher=str(tmp_path / "same"),
                    audio_kd=1.0, token_kd=1.0, kd_on="all")
    task, _ = build_slu(cfg)
    batch = task.collate([task.train_set[i] for i in range(len(task.train_set))])
    with torch.no_grad():
        out = student.eval()(batch["audio"], batch["audio_lengths"], batch["dec_in"], batch["target_lengths"])
        terms = continual_terms(student, out, mmseq.load(tmp_path / "same").eval(), batch, cfg)
    assert float(terms["audio_kd"]) < 1e-10 and abs(float(terms["token_kd"])) < 1e-6


def test_distillation_needs_a_teacher_and_heads(corpus):
    with pytest.raises(ConfigError, match="need task_args.teacher"):
        SluConfig(corpus=str(corpus), token_kd=1.0)


@pytest.fixture()
def noisy_corpus(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for k, (i, y, t, s) in enumerate(ROWS):
        sf.write(tmp_path / f"{i}.wav", (0.1 * rng.standard_normal(4000 + 800 * k)).astype(np.float32), 16000)
        lines.append(json.dumps({"id": i, "audio": f"{i}.wav", "duration": (4000 + 800 * k) / 16000, "text": t,
                                 "intent": y}))
    for split in ("train", "dev", "test"):
        (tmp_path / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_an_upstream_gives_cached_frames_equal_to_recomputed_ones(noisy_corpus, tmp_path):
    import mmseq
    from mmseq.data.audio import load_audio
    from mmseq.tasks.speecht5.data import pad_waveforms

    torch.manual_seed(0)
    mmseq.save_pretrained(mmseq.create_model("tera_tiny"), tmp_path / "up")
    cfg = dict(corpus=str(noisy_corpus), upstream=str(tmp_path / "up"), upstream_layer=1, target="label")
    task, cached = build_slu(SluConfig(**cfg))
    _, direct = build_slu(SluConfig(**cfg, cache_upstream=False))
    upstream = mmseq.load(tmp_path / "up").eval()
    wav = load_audio(str(noisy_corpus / "u2.wav"), 16000)[None]
    with torch.no_grad():
        want = upstream.forward_features(wav, torch.tensor([wav.shape[1]])).hidden_states[1][0]
    got = cached.items["train"][2].audio
    assert got.shape == want.shape and task.info["feature_dim"] == want.shape[1]
    torch.testing.assert_close(got, want, atol=2e-3, rtol=2e-3)  # stored as float16
    torch.testing.assert_close(direct.items["train"][2].audio, got, atol=2e-3, rtol=2e-3)
    assert list((noisy_corpus).glob("train.jsonl.upstream-*-layer1-float16.pt"))
    # a feature-frames model trains on them, padded batches included
    model = mmseq.create_model("speecht5_asr_tiny", vocab_size=task.info["vocab_size"], speech_frontend="features",
                               feature_dim=task.info["feature_dim"], feature_stack=2, mask_time_prob=0.0)
    batch = task.collate([task.train_set[i] for i in range(4)])
    assert batch["audio"].shape[:2] == (4, max(x.shape[0] for x in (task.train_set[i].audio for i in range(4))))
    loss, _ = task.loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.encoder_prenet.projection.weight.grad.abs().sum() > 0
    frames, lengths = pad_waveforms([task.train_set[i].audio for i in (0, 3)])
    assert frames.shape[2] == want.shape[1] and lengths.tolist() == [task.train_set[0].audio.shape[0],
                                                                     task.train_set[3].audio.shape[0]]


def test_a_missing_or_featureless_upstream_is_named(noisy_corpus, tmp_path):
    with pytest.raises(ConfigError, match="upstream .*nowhere.* does not exist"):
        build_slu(SluConfig(corpus=str(noisy_corpus), upstream=str(tmp_path / "nowhere")))
