"""SpeechT5 ASR / ST losses against direct formulas, torch's CTC and transformers' ASR loss; the collate, the CTC
targets, the trained vocabularies and the speech data helpers."""

import math

import pytest
import torch
import torch.nn.functional as F

import mmseq
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.errors import ConfigError
from mmseq.tasks.speecht5.data import SpeechItem, bind_tokenizer, duration_plan, pad_waveforms, random_crop
from mmseq.tasks.speecht5.text import collate_text, ctc_targets, speech_to_text_loss, train_unigram

PAD, EOS = 1, 2
TEXTS = ["turn on the lights", "switch off the music", "bring me the newspaper"]


def tiny_asr(**overrides):
    torch.manual_seed(0)
    quiet = dict(ctc=True, mask_time_prob=0.0, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
                 positional_dropout=0.0, encoder_layerdrop=0.0, decoder_layerdrop=0.0)
    return mmseq.create_model("speecht5_asr_tiny", **{**quiet, **overrides})


def speech_batch(tokenizer, samples=(4000, 3300, 2600)):
    g = torch.Generator().manual_seed(0)
    items = [SpeechItem(torch.randn(n, generator=g) * 0.3, tokenizer.encode(TEXTS[i % 3][: 6 + 3 * i]), i)
             for i, n in enumerate(samples)]
    return collate_text(items, tokenizer.pad_id, tokenizer.eos_id)


@pytest.fixture(scope="module")
def tokenizer():
    return SpeechT5CharTokenizer.train(TEXTS * 2)


def test_collate_shifts_targets_right_behind_the_start_token():
    items = [SpeechItem(torch.ones(5), [7, 8, 9, EOS], 0), SpeechItem(torch.ones(3), [5, EOS], 1)]
    batch = collate_text(items, PAD, EOS)
    assert batch["target"].tolist() == [[7, 8, 9, EOS], [5, EOS, PAD, PAD]]
    assert batch["dec_in"].tolist() == [[EOS, 7, 8, 9], [EOS, 5, PAD, PAD]]
    assert batch["target_lengths"].tolist() == [4, 2] and batch["audio_lengths"].tolist() == [5, 3]
    assert batch["audio"][1, 3:].abs().sum() == 0


def test_ctc_targets_drop_eos_and_padding():
    target = torch.tensor([[7, 8, 9, EOS], [5, EOS, PAD, PAD], [EOS, PAD, PAD, PAD]])
    labels, lengths = ctc_targets(target, PAD, EOS)
    assert lengths.tolist() == [3, 1, 0]
    assert labels[0, :3].tolist() == [7, 8, 9] and labels[1, :1].tolist() == [5]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_loss_equals_its_formula_and_ctc_equals_torch(tokenizer, smoothing):
    model = tiny_asr(vocab_size=len(tokenizer)).eval()
    batch = speech_batch(tokenizer)
    loss, metrics = speech_to_text_loss(model, batch, ce_weight=0.3, ctc_weight=0.7, label_smoothing=smoothing,
                                        blank_id=tokenizer.ctc_blank_id)
    with torch.no_grad():
        out = model(batch["audio"], batch["audio_lengths"], batch["dec_in"], batch["target_lengths"])
    # Cross-entropy written out: per valid token (1 - eps) * -log p(target) + eps * mean over the vocabulary.
    logp = out.outputs.float().log_softmax(-1)
    ce_sum, tokens = 0.0, 0
    for row, n in enumerate(batch["target_lengths"].tolist()):
        for t in range(n):
            y = int(batch["target"][row, t])
            ce_sum += (1 - smoothing) * -logp[row, t, y] + smoothing * -logp[row, t].mean()
            tokens += 1
    # CTC: torch's own loss per utterance, on the transcript without </s>, with the encoder lengths.
    ctc_sum = 0.0
    for row, n in enumerate(batch["target_lengths"].tolist()):
        labels = batch["target"][row, : n - 1]
        frames = int(out.encoder_lengths[row])
        ctc_sum += F.ctc_loss(out.encoder_outputs[row : row + 1, :frames].transpose(0, 1), labels[None],
                              torch.tensor([frames]), torch.tensor([n - 1]), blank=tokenizer.ctc_blank_id,
                              reduction="sum", zero_infinity=True)
    expected = (0.3 * ce_sum + 0.7 * ctc_sum) / tokens
    torch.testing.assert_close(loss, expected.float(), rtol=1e-5, atol=1e-5)
    assert math.isclose(metrics["ce"], float(ce_sum / tokens), rel_tol=1e-5)
    assert math.isclose(metrics["ctc"], float(ctc_sum / tokens), rel_tol=1e-5)
    # The encoder lengths are the pre-net's: fewer frames for the shorter rows.
    assert out.encoder_lengths.tolist() == model.encoder_prenet.output_lengths(batch["audio_lengths"]).tolist()
    assert len(set(out.encoder_lengths.tolist())) == 3


def test_ctc_that_cannot_align_is_zeroed_not_infinite(tokenizer):
    model = tiny_asr(vocab_size=len(tokenizer)).eval()
    items = [SpeechItem(torch.randn(800), tokenizer.encode("a much too long transcript for this audio"), 0)]
    batch = collate_text(items, tokenizer.pad_id, tokenizer.eos_id)
    loss, metrics = speech_to_text_loss(model, batch, ce_weight=0.0, ctc_weight=1.0)
    assert metrics["ctc"] == 0.0 and torch.isfinite(loss)


def test_every_trained_parameter_gets_a_gradient_ctc_head_included(tokenizer):
    # Training mode with SpecAugment on (at least two masked spans), so the mask embedding trains too.
    model = tiny_asr(vocab_size=len(tokenizer), mask_time_prob=0.05).train()
    loss, _ = speech_to_text_loss(model, speech_batch(tokenizer), blank_id=tokenizer.ctc_blank_id)
    loss.backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, missing
    assert model.encoder_postnet.proj.weight.grad.abs().sum() > 0


def test_ctc_weight_without_a_ctc_head_is_a_config_error(tokenizer):
    model = tiny_asr(vocab_size=len(tokenizer))
    model.encoder_postnet = None
    with pytest.raises(ConfigError, match="model_args.ctc=true"):
        speech_to_text_loss(model, speech_batch(tokenizer), ctc_weight=0.5)


def test_cross_entropy_equals_transformers_loss(tmp_path):
    # transformers takes labels padded with -100, shifts them right behind decoder_start_token_id (2) itself and
    # averages the cross-entropy over the labelled tokens; no label smoothing there.
    transformers = pytest.importorskip("transformers")
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speecht5"))
    from speecht5_helpers import hf_config

    torch.manual_seed(0)
    hf = transformers.SpeechT5ForSpeechToText(hf_config()).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = mmseq.load(tmp_path / "hf").eval()
    g = torch.Generator().manual_seed(1)
    ids = [[10, 11, 12, 13, 14, EOS], [20, 21, EOS], [30, 31, 32, 33, EOS]]
    # Equal waveform lengths: transformers' feature encoder normalises over the padded length.
    items = [SpeechItem(torch.randn(3000, generator=g) * 0.3, row, i) for i, row in enumerate(ids)]
    batch = collate_text(items, PAD, EOS)
    labels = batch["target"].masked_fill(batch["target"].eq(PAD), -100)
    reference = hf(input_values=batch["audio"], labels=labels).loss
    loss, metrics = speech_to_text_loss(ours, batch, ce_weight=1.0, ctc_weight=0.0)
    assert abs(loss.item() - reference.item()) < 1e-5, (loss.item(), reference.item())
    assert abs(metrics["ce"] - reference.item()) < 1e-5


def test_trained_vocabularies_and_their_size_checks(tokenizer):
    unigram = train_unigram(["eins zwei drei", "zwei drei", "drei eins eins"] * 5, 16)
    assert len(unigram) == 16 and unigram.ctc_blank_id == 15
    assert unigram.decode(unigram.encode("zwei eins")) == "zwei eins"
    with pytest.raises(ConfigError, match="vocab_size"):
        train_unigram(["eins zwei"], 500)
    model = tiny_asr(vocab_size=len(tokenizer) + 1)
    with pytest.raises(ConfigError, match=f"model_args.vocab_size={len(tokenizer)}"):
        bind_tokenizer(model, tokenizer)
    model = tiny_asr(vocab_size=len(tokenizer))
    bind_tokenizer(model, tokenizer)
    assert model.tokenizer is tokenizer


def test_speech_data_helpers():
    wav, lengths = pad_waveforms([torch.ones(4), torch.ones(2)])
    assert wav.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]] and lengths.tolist() == [4, 2]
    x = torch.arange(100.0)
    crop = random_crop(x, 10, torch.Generator().manual_seed(0))
    assert len(crop) == 10 and torch.equal(crop, torch.arange(crop[0].item(), crop[0].item() + 10))
    assert torch.equal(random_crop(x, 200), x) and torch.equal(random_crop(x, 0), x)
    plan = duration_plan([1.0, 1.1, 5.0, 5.2, 0.9, 4.8], max_batch_seconds=10.0)(4, 0)
    batches = plan.batches(0)
    assert sorted(i for b in batches for i in b) == list(range(6)) and batches == plan.batches(0)
    assert all(max([1.0, 1.1, 5.0, 5.2, 0.9, 4.8][i] for i in b) * len(b) <= 10.0 or len(b) == 1 for b in batches)
    assert {frozenset(b) for b in batches} >= {frozenset({0, 1, 4})}
    fixed = duration_plan([1.0] * 5, 0.0)(2, 0).batches(0)
    assert [len(b) for b in fixed] == [2, 2, 1]
