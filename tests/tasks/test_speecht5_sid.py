"""SpeechT5 speaker identification: the loss against its formula, both poolings (the decoder-query one against its
definition), gradients, crops and the deterministic held-out split of a corpus split by speaker."""

import json

import pytest
import soundfile as sf
import torch

import mmseq
from mmseq.data.manifest import Utterance
from mmseq.errors import ConfigError
from mmseq.nn.attention import lengths_to_padding_mask
from mmseq.tasks import build_task
from mmseq.tasks.speecht5.data import SpeechItem
from mmseq.tasks.speecht5.sid import collate_eval_speakers, collate_speakers, speaker_id_loss, split_by_speaker

QUIET = dict(mask_time_prob=0.0, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, encoder_layerdrop=0.0,
             decoder_layerdrop=0.0)


def sid_model(pooling, **overrides):
    torch.manual_seed(0)
    return mmseq.create_model("speecht5_sid_tiny", sid_pooling=pooling, **{**QUIET, **overrides})


def batch_of(lengths=(4000, 3000, 2400), labels=(0, 3, 1)):
    g = torch.Generator().manual_seed(0)
    items = [SpeechItem(torch.randn(n, generator=g) * 0.3, y, i) for i, (n, y) in enumerate(zip(lengths, labels))]
    return collate_speakers(items, 0)


@pytest.mark.parametrize("pooling", ["encoder", "decoder"])
def test_loss_is_mean_cross_entropy_and_accuracy_exact(pooling):
    model = sid_model(pooling).eval()
    batch = batch_of()
    loss, metrics = speaker_id_loss(model, batch)
    with torch.no_grad():
        logits = model(batch["audio"], batch["audio_lengths"])
    expected = -sum(logits.log_softmax(-1)[i, y] for i, y in enumerate(batch["labels"].tolist())) / 3
    torch.testing.assert_close(loss, expected)
    correct = sum(int(logits[i].argmax() == y) for i, y in enumerate(batch["labels"].tolist()))
    assert metrics["accuracy"] == (correct, 3)


def test_decoder_pooling_is_the_decoder_on_one_zero_query():
    model = sid_model("decoder").eval()
    batch = batch_of()
    with torch.no_grad():
        logits = model(batch["audio"], batch["audio_lengths"])
        features = model.forward_features(batch["audio"], batch["audio_lengths"])
        memory, lengths = features.hidden_states[-1], features.lengths
        head = model.postnet
        zero = torch.zeros(3, 1, memory.shape[-1])
        out = head.decoder(zero, None, memory, lengths_to_padding_mask(lengths, memory.shape[1])).last_hidden_state
        expected = out[:, 0] @ head.output.weight.T
        # One row alone gives the same logits: padding never reaches the pooled state.
        alone = model(batch["audio"][2:, : int(batch["audio_lengths"][2])], batch["audio_lengths"][2:])
    assert head.output.bias is None
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(alone, logits[2:], atol=1e-5, rtol=1e-5)


def test_encoder_pooling_is_the_masked_mean():
    model = sid_model("encoder").eval()
    batch = batch_of()
    with torch.no_grad():
        logits = model(batch["audio"], batch["audio_lengths"])
        features = model.forward_features(batch["audio"], batch["audio_lengths"])
    hidden, lengths = features.hidden_states[-1], features.lengths
    means = torch.stack([hidden[i, : int(n)].mean(0) for i, n in enumerate(lengths)])
    torch.testing.assert_close(logits, model.postnet.output(means))


@pytest.mark.parametrize("pooling", ["encoder", "decoder"])
def test_every_trained_parameter_gets_a_gradient(pooling):
    model = sid_model(pooling, mask_time_prob=0.05).train()
    loss, _ = speaker_id_loss(model, batch_of())
    loss.backward()
    # Zero by construction (a gradient still arrives): with one decoder step the self-attention softmax is over one
    # key, always 1, so the query and key projections do not matter; and the first layer's input is the zero query,
    # so its value projection's weight multiplies zeros (its bias trains).
    by_design = ("postnet.decoder.layers.0.self_attn.q_proj", "postnet.decoder.layers.0.self_attn.k_proj",
                 "postnet.decoder.layers.1.self_attn.q_proj", "postnet.decoder.layers.1.self_attn.k_proj",
                 "postnet.decoder.layers.0.self_attn.v_proj.weight")
    missing = [n for n, p in model.named_parameters() if p.grad is None
               or (p.grad.abs().sum() == 0 and not n.startswith(by_design))]
    assert not missing, missing


def test_crops_random_for_training_first_window_for_evaluation():
    items = [SpeechItem(torch.arange(1000.0), 2, 0), SpeechItem(torch.arange(300.0), 1, 1)]
    torch.manual_seed(0)
    train = collate_speakers(items, 500)
    assert train["audio_lengths"].tolist() == [500, 300] and train["labels"].tolist() == [2, 1]
    start = int(train["audio"][0, 0])
    assert torch.equal(train["audio"][0], torch.arange(start, start + 500.0))
    evaluation = collate_eval_speakers(items, 500)
    assert torch.equal(evaluation["audio"][0], torch.arange(500.0))


def test_split_by_speaker_holds_out_utterances_of_every_speaker_deterministically():
    utts = [Utterance(f"{s}_{i:02d}", "x.wav", 1.0, speaker=s) for s in ("b", "a") for i in range(20)]
    parts = split_by_speaker(utts, 0.1, 0.2, seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [28, 4, 8]
    for name in ("val", "test"):
        assert {u.speaker for u in parts[name]} == {"a", "b"}
    ids = [{u.id for u in parts[k]} for k in ("train", "val", "test")]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    again = split_by_speaker(list(reversed(utts)), 0.1, 0.2, seed=0)
    assert all([u.id for u in parts[k]] == [u.id for u in again[k]] for k in parts)
    other = split_by_speaker(utts, 0.1, 0.2, seed=1)
    assert {u.id for u in other["test"]} != ids[2]


def test_task_pools_the_manifests_and_names_the_class_count(tmp_path):
    for split, speakers in (("train", ["s1", "s2"]), ("dev", ["s3"]), ("test", ["s4"])):
        rows = []
        for s in speakers:
            for i in range(5):
                sf.write(tmp_path / f"{s}_{i}.wav", (torch.randn(1600) * 0.1).numpy(), 16000)
                rows.append({"id": f"{s}_{i}", "audio": f"{s}_{i}.wav", "duration": 0.1, "speaker": s})
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = build_task("speecht5_sid", {"corpus": str(tmp_path), "val_fraction": 0.2, "test_fraction": 0.2})
    assert task.info["labels"] == ["s1", "s2", "s3", "s4"]
    assert task.info["utterances"] == {"train": 12, "val": 4, "test": 4}
    batch = task.collate([task.train_set[i] for i in range(4)])
    model = sid_model("decoder", num_classes=3)
    with pytest.raises(ConfigError, match="model_args.num_classes=4"):
        task.loss(model, batch)
    model = sid_model("decoder", num_classes=4)
    task.loss(model, batch)
    assert model.labels == ["s1", "s2", "s3", "s4"]
    with pytest.raises(ConfigError, match="not in the training split"):
        build_task("speecht5_sid", {"corpus": str(tmp_path), "split": "given"})


def test_the_voxceleb_init_from_maps_an_asr_checkpoints_decoder_into_the_pooling_head(tmp_path):
    from mmseq.train.config import InitFromConfig
    from mmseq.train.init import init_from

    torch.manual_seed(1)
    asr = mmseq.create_model("speecht5_asr_tiny", ctc=True)
    mmseq.save_pretrained(asr, tmp_path / "asr")
    sid = sid_model("decoder")
    report = init_from(sid, InitFromConfig(str(tmp_path / "asr"), prefix_map={"encoder_prenet.": "prenet.",
                                                                       "decoder.": "postnet.decoder."},
                                           exclude=["decoder_prenet.*", "decoder_postnet.*", "encoder_postnet.*"],
                                           strict=False))
    assert report.unexpected == [] and report.missing == ["postnet.output.weight"]
    torch.testing.assert_close(sid.postnet.decoder.layers[1].encoder_attn.k_proj.weight,
                               asr.decoder.layers[1].encoder_attn.k_proj.weight)
    torch.testing.assert_close(sid.encoder.layers[0].attention.q_proj.weight,
                               asr.encoder.layers[0].attention.q_proj.weight)
    torch.testing.assert_close(sid.prenet.feature_encoder.conv_layers[0].conv.weight,
                               asr.encoder_prenet.feature_encoder.conv_layers[0].conv.weight)
