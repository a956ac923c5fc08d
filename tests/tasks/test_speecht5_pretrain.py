"""SpeechT5 pre-training: each loss term on tiny tensors against its direct formula, BART noising, the alternating
batch plan, and the task end to end on a micro corpus (units written by ``mmseq data units``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

import mmseq
from mmseq.data.synth.text import write_text
from mmseq.data.units import learn_units
from mmseq.errors import ConfigError
from mmseq.tasks import build_task
from mmseq.tasks.speecht5.pretrain import (IGNORE, AlternatingBatches, align_units, bart_noise, insertion_noise,
                                           masked_unit_loss,
                                           poisson_span_lengths, shift_tokens_right)

# A tiny pre-training model on 20 ms frames (one 25 ms filter bank, as the tiny ASR recipe).
MODEL_ARGS = dict(conv_dims=(32,), conv_kernels=(400,), conv_strides=(320,), num_units=6, encoder_layerdrop=0.0,
                  decoder_layerdrop=0.0, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                  positional_dropout=0.0, speech_prenet_dropout=0.0, postnet_dropout=0.0, mask_time_prob=0.0)


# --- the terms ----------------------------------------------------------------------------------------------------

def test_unit_loss_is_the_ce_of_masked_labelled_frames_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, generator=g)
    units = torch.tensor([[0, 1, 2, 3, IGNORE], [3, 2, 1, 0, 1]])
    mask = torch.tensor([[True, False, True, False, True], [False, True, True, False, False]])
    ce, acc = masked_unit_loss(logits, mask, units)
    picked = [(0, 0), (0, 2), (1, 1), (1, 2)]  # (0, 4) is masked but has no label
    direct = sum(-torch.log_softmax(logits[b, t], -1)[units[b, t]] for b, t in picked) / 4
    assert math.isclose(ce.item(), direct.item(), rel_tol=1e-6)
    assert acc.denominator == 4
    changed = logits.clone()
    changed[0, 1] += 100.0  # an unmasked frame: no effect
    assert math.isclose(masked_unit_loss(changed, mask, units)[0].item(), ce.item(), rel_tol=1e-6)
    assert align_units(units, 7)[:, 5:].eq(IGNORE).all() and align_units(units, 3).shape == (2, 3)


def test_unit_logits_are_cosines_over_the_temperature():
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_pretrain_tiny", **MODEL_ARGS)
    hidden = torch.randn(2, 3, 32)
    logits = model.unit_logits(hidden)
    proj = model.final_proj(hidden)
    for b, t, k in [(0, 0, 0), (1, 2, 5), (0, 1, 3)]:
        cos = F.cosine_similarity(proj[b, t], model.label_embs[k], dim=0)
        assert math.isclose(logits[b, t, k].item(), cos.item() / 0.1, rel_tol=1e-5)


def test_feature_penalty_is_the_mean_square_of_the_convolutional_features_and_masks_follow_fairseq():
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_pretrain_tiny", **MODEL_ARGS).eval()
    wav = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 12000])
    out = model.forward_speech(wav, lengths, torch.zeros(2, 4, 16))
    feats = model.speech_encoder_prenet.feature_encoder(wav, lengths)
    assert math.isclose(out.feature_penalty.item(), feats.pow(2).mean().item(), rel_tol=1e-5)
    frames = model.speech_encoder_prenet.output_lengths(lengths)
    assert out.mask.shape == (2, 49) and not out.mask[1, int(frames[1]):].any()
    assert out.mask[0].sum() == out.mask[1].sum() > 0  # rows equalised, as compute_mask_indices does
    # a caller's mask is used as given
    mask = out.mask.clone()
    again = model.forward_speech(wav, lengths, torch.zeros(2, 4, 16), mask=mask)
    assert torch.equal(again.mask, mask)


def test_with_log_mel_the_feature_penalty_is_taken_before_the_subsampling_projection():
    # the projection's output is added to the positions as it is: a penalty there would shrink the speech content
    torch.manual_seed(0)
    args = {k: v for k, v in MODEL_ARGS.items() if not k.startswith("conv_")}
    model = mmseq.create_model("speecht5_pretrain_tiny", **args, speech_frontend="logmel").eval()
    prenet = model.speech_encoder_prenet
    wav = torch.randn(2, 16000) * 0.1
    lengths = torch.tensor([16000, 12000])
    seen = []
    hook = prenet.subsampling.out.register_forward_pre_hook(lambda m, i: seen.append(i[0]))
    out = model.forward_speech(wav, lengths, torch.zeros(2, 4, 16))
    hook.remove()
    convolved = seen[0]
    assert (convolved >= 0).all() and convolved.shape[-1] == prenet.subsampling.out.in_features  # ReLU'd, flat
    assert math.isclose(out.feature_penalty.item(), convolved.pow(2).mean().item(), rel_tol=1e-5)


def test_codebook_replaces_one_tenth_of_the_positions_the_same_in_every_row():
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_pretrain_tiny", **MODEL_ARGS).eval()
    memory = torch.randn(3, 25, 32)
    mixed, q = model.mix_codebook(memory, torch.tensor([25, 20, 10]))
    replaced = (mixed != memory).any(-1)  # [B, T]
    assert replaced.sum(1).tolist() == [2, 2, 2]  # int(25 * 0.1)
    assert torch.equal(replaced[0], replaced[1]) and torch.equal(replaced[0], replaced[2])
    assert torch.allclose(mixed[replaced], q.x[replaced])
    ablation = mmseq.create_model("speecht5_pretrain_tiny", codebook=False, **MODEL_ARGS)
    assert ablation.quantizer is None and ablation.mix_codebook(memory, torch.tensor([25, 20, 10]))[0] is memory


def test_poisson_span_lengths_have_the_poisson_mean_and_variance():
    lengths = poisson_span_lengths(20000, 3.5, torch.Generator().manual_seed(0)).float()
    assert abs(lengths.mean().item() - 3.5) < 0.06 and abs(lengths.var().item() - 3.5) < 0.15


def _sentence(words: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``<s> (▁ c c c)* </s>`` with ``▁`` = 4 and characters 5..29."""
    ids = [0]
    for _ in range(words):
        ids += [4] + torch.randint(5, 30, (int(torch.randint(2, 6, (), generator=g)),), generator=g).tolist()
    ids.append(2)
    tokens = torch.tensor(ids)
    return tokens, tokens.eq(4)


def test_bart_noise_masks_whole_words_in_spans_each_replaced_by_one_token():
    g = torch.Generator().manual_seed(0)
    masked_words = total_words = replacements = 0
    for _ in range(300):
        tokens, starts = _sentence(20, g)
        # random replacements drawn from ids 31..34, apart from the characters, so the output reads unambiguously
        out = bart_noise(tokens, starts, mask_id=30, random_range=(31, 35), generator=g)
        assert out[0] == 0 and out[-1] == 2
        words = [tuple(w) for w in _split_words(tokens[1:-1].tolist())]
        kept = [tuple(w) for w in _split_words([t for t in out[1:-1].tolist() if t < 30])]
        # every surviving word is intact and in order: spans delete whole words
        it = iter(words)
        assert all(any(w == k for w in it) for k in kept), (words, kept)
        # one replacement token per span, right where a deleted run of words was
        runs = sum(1 for a, b in zip([None, *out[1:-1].tolist()], out[1:-1].tolist()) if b >= 30)
        total_words += len(words)
        masked_words += len(words) - len(kept)
        replacements += runs
    share = masked_words / total_words
    assert 0.22 < share <= 0.31, share  # ceil(30%) of the words, less where chosen spans overlap
    mean_span = masked_words / replacements
    assert 2.5 < mean_span < 4.0, mean_span  # Poisson(3.5) spans (zero-length ones insert a token instead)


def _split_words(ids: list[int]) -> list[list[int]]:
    words: list[list[int]] = []
    for t in ids:
        if t == 4 or not words:
            words.append([t])
        else:
            words[-1].append(t)
    return words


def test_bart_noise_random_replacements_are_a_tenth_of_the_spans_and_ceil_of_the_inserts():
    g = torch.Generator().manual_seed(1)
    masks = randoms = 0
    for _ in range(400):
        tokens, starts = _sentence(60, g)
        # Poisson(8) spans are almost never empty, so every replacement token here stands for a span
        out = bart_noise(tokens, starts, mask_id=30, random_range=(31, 32), poisson_lambda=8.0, generator=g)
        masks += int((out == 30).sum())
        randoms += int((out == 31).sum())
    assert 0.07 < randoms / (masks + randoms) < 0.13
    tokens = torch.arange(10)
    out = insertion_noise(tokens, 5, 30, 0.1, (31, 32), generator=g)
    assert out.numel() == 15 and out[0] == 0 and out[-1] == 9
    assert int((out == 31).sum()) == 1 and int((out == 30).sum()) == 4  # ceil(5 * 0.1) random
    assert out[out < 30].tolist() == tokens.tolist()


def test_teacher_forcing_inputs_shift_right():
    ids = torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]])
    assert shift_tokens_right(ids, torch.tensor([4, 3]), 2, 1).tolist() == [[2, 0, 5, 6], [2, 0, 7, 1]]


def test_alternating_batches_alternate_modalities_and_walk_through_the_text():
    plan = AlternatingBatches(num_speech=10, num_text=7, speech_batch=4, text_batch=3, seed=0)
    epoch0 = plan.batches(0)
    assert len(epoch0) == 6 and plan.batches(0) == epoch0
    for i, batch in enumerate(epoch0):
        assert all((j < 10) == (i % 2 == 0) for j in batch)
    assert sorted(j for b in epoch0[::2] for j in b) == list(range(10))
    texts = [b for e in range(3) for b in plan.batches(e)[1::2]]
    assert len({tuple(b) for b in texts}) > 3
    lengths = [float(i) for i in range(10)]
    bucketed = AlternatingBatches(10, 7, 4, 3, seed=0, speech_lengths=lengths).batches(1)
    assert all(max(b) - min(b) <= 3 for b in bucketed[::2])  # neighbours in length share a batch


# --- the task end to end --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pretrain_corpus")
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("dev", 2)):
        lines = []
        for i in range(count):
            n = int(rng.integers(9000, 14000))
            t = np.arange(n) / 16000
            f = [250.0, 700.0, 1500.0][i % 3]
            wav = (0.3 * np.sin(2 * np.pi * f * t) * (t < n / 32000) + 0.3 * np.sin(2 * np.pi * 1.7 * f * t) *
                   (t >= n / 32000) + 0.01 * rng.standard_normal(n)).astype(np.float32)
            sf.write(root / f"{split}_{i}.wav", wav, 16000)
            lines.append({"id": f"{split}_{i}", "audio": f"{split}_{i}.wav", "duration": n / 16000,
                          "speaker": f"s{i % 2}"})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    learn_units([root / "train.jsonl", root / "dev.jsonl"], "mfcc", clusters=6, hop=320, seed=0)
    write_text(root / "text.txt", 12, seed=0)
    write_text(root / "text_dev.txt", 4, seed=1)
    return root


def _task(corpus: Path, **overrides):
    args = dict(corpus=str(corpus), units="mfcc_km6", text_train=str(corpus / "text.txt"),
                text_val=str(corpus / "text_dev.txt"), num_mel_bins=16, speaker_embedding_dim=8)
    return build_task("speecht5_pretrain", {**args, **overrides})


def test_the_loss_is_the_weighted_sum_of_its_terms_for_speech_and_text_batches(corpus):
    task = _task(corpus)
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_pretrain_tiny", vocab_size=task.info["vocab_size"], **MODEL_ARGS)
    task.prepare_model(model)
    model.train()
    batches = task.plan(3, 0).batches(0)
    speech = task.collate([task.train_set[i] for i in batches[0]])
    text = task.collate([task.train_set[i] for i in batches[1]])
    assert set(speech) == {"speech"} and set(text) == {"text"}
    torch.manual_seed(1)
    loss, m = task.loss(model, speech)
    expected = (m["unit_ce"] + 10 * m["feature_penalty"] + m["l1"] + m["stop_bce"] + 0.1 * m["diversity"])
    assert math.isclose(loss.item(), expected, rel_tol=1e-5)
    assert 0.3 < m["masked_share"].numerator / m["masked_share"].denominator < 0.85  # short rows: min 2 spans
    assert math.log(6) * 0.5 < m["unit_ce"] < math.log(6) * 2
    torch.manual_seed(1)
    loss, m = task.loss(model, text)
    assert math.isclose(loss.item(), m["text_ce"] + 0.1 * m["diversity"], rel_tol=1e-5)
    assert m["temperature"] < 2.0  # the speech batch was one update
    # the weights are the config's
    torch.manual_seed(1)
    heavy = _task(corpus, feature_penalty_weight=0.0, reconstruction_weight=2.0)
    loss2, m2 = heavy.loss(model, speech)
    assert math.isclose(loss2.item(), m2["unit_ce"] + 2 * (m2["l1"] + m2["stop_bce"]) + 0.1 * m2["diversity"],
                        rel_tol=1e-5)
    loss.backward()


def test_validation_batches_may_hold_both_modalities(corpus):
    task = _task(corpus)
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_pretrain_tiny", vocab_size=task.info["vocab_size"], **MODEL_ARGS)
    task.prepare_model(model)
    batch = task.collate([task.val_set[i] for i in range(len(task.val_set))])
    assert set(batch) == {"speech", "text"} and task.batch_size_of(batch) == 6
    with torch.no_grad():
        _, m = task.loss(model.eval(), batch)
    assert {"unit_ce", "text_ce", "l1"} <= set(m)


def test_a_model_that_does_not_fit_the_units_is_named(corpus):
    task = _task(corpus)
    model = mmseq.create_model("speecht5_pretrain_tiny", vocab_size=task.info["vocab_size"],
                               **{**MODEL_ARGS, "num_units": 9})
    with pytest.raises(ConfigError, match="num_units=6"):
        task.prepare_model(model)
    wrong_rate = mmseq.create_model("speecht5_pretrain_tiny", vocab_size=task.info["vocab_size"],
                                    **{**MODEL_ARGS, "conv_strides": (160,)})
    with pytest.raises(ConfigError, match="--hop 160"):
        task.prepare_model(wrong_rate)
    with pytest.raises(ConfigError, match="text_train"):
        build_task("speecht5_pretrain", {"corpus": str(corpus)})


def test_units_from_a_trained_models_layer(corpus, tmp_path):
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_pretrain_tiny", **MODEL_ARGS)
    mmseq.save_pretrained(model, tmp_path / "ckpt")
    summary = learn_units([corpus / "dev.jsonl"], f"{tmp_path / 'ckpt'}:1", clusters=3, seed=0, tag="layer1")
    assert summary["manifests"][str(corpus / "dev.jsonl")]["frames"] > 0
    meta = json.loads((corpus / "dev.jsonl.layer1.json").read_text())
    assert meta["hop"] == 320 and meta["features"].endswith(":1")
