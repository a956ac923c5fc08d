"""SpeechT5 speech-output tasks (TTS, VC, SE): each loss against its direct formula, the TTS loss against
transformers' on the same weights (with and without guided attention), VC against transformers' speech-to-speech
model given ``labels``, gradients of every trained parameter, attention probabilities of the first heads only, and
a tiny training run whose checkpoint speaks through ``mmseq.pipeline('tts', ...)``."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mmseq
from mmseq.data.features import SpeechT5LogMel
from mmseq.errors import ConfigError, InputError
from mmseq.generation.speech import enhance_speech, se_estimate
from mmseq.nn.attention import MultiheadAttention
from mmseq.postnets.speech import SpeechOutput
from mmseq.tasks import build_task
from mmseq.tasks.speecht5.speech import (SEConfig, SpeechOutputConfig, guided_attention_loss,
                                         guided_attention_weights, shift_right_reduced,
                                         spectrogram_losses, speech_output_loss)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speecht5"))
from speecht5_helpers import hf_config, make_speech_output_corpus  # noqa: E402

transformers = pytest.importorskip("transformers")

# A model size every test here shares: 16 mel bins, 8-d speaker vectors, 4 heads, 2 decoder layers.
SMALL = dict(num_mel_bins=16, speaker_embedding_dim=8)
# A 320x waveform pre-net (the tiny builder's is 20x, which makes attention over seconds of audio slow).
FAST_CONV = dict(conv_dims=(32, 32, 32, 32), conv_kernels=(10, 8, 4, 4), conv_strides=(5, 4, 4, 4))




pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def no_hf_prenet_dropout(monkeypatch):
    """transformers' speech-decoder pre-net dropout cannot be switched off: make it the identity there, as
    ``speech_prenet_dropout=0`` is in mmseq."""
    from transformers.models.speecht5 import modeling_speecht5

    monkeypatch.setattr(modeling_speecht5.SpeechT5SpeechDecoderPrenet, "_consistent_dropout", lambda self, x, p: x)


def random_output(b, t, m, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SpeechOutput(torch.randn(b, t, m, generator=g), torch.randn(b, t, m, generator=g),
                        torch.randn(b, t, generator=g))


# --- the formulas -----------------------------------------------------------------------------------------------

def test_spectrogram_losses_equal_their_direct_formula():
    out = random_output(2, 6, 3)
    target = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(5))
    lengths = torch.tensor([6, 4])
    l1, bce = spectrogram_losses(out, target, lengths, pos_weight=5.0)
    abs_sum, count, bce_sum, frames = 0.0, 0, 0.0, 0
    for i, n in enumerate(lengths.tolist()):
        for t in range(n):
            for k in range(3):
                y = target[i, t, k]
                abs_sum += abs(out.mel_before[i, t, k] - y) + abs(out.mel_after[i, t, k] - y)
                count += 1
            y, x = float(t == n - 1), float(out.stop_logits[i, t])
            p = 1 / (1 + math.exp(-x))
            bce_sum += -(5.0 * y * math.log(p) + (1 - y) * math.log(1 - p))
            frames += 1
    assert l1.item() == pytest.approx(float(abs_sum) / count, rel=1e-5)
    assert bce.item() == pytest.approx(bce_sum / frames, rel=1e-5)


def test_guided_attention_equals_its_definition_with_masking():
    w = guided_attention_weights(input_length=5, output_length=3, sigma=0.4)
    for t in range(3):
        for n in range(5):
            assert w[t, n].item() == pytest.approx(1 - math.exp(-((n / 5 - t / 3) ** 2) / (2 * 0.4**2)), abs=1e-6)
    g = torch.Generator().manual_seed(0)
    attn = [torch.rand(2, 2, 4, 6, generator=g).softmax(-1) for _ in range(3)]  # 3 layers x 2 heads
    ilens, olens = torch.tensor([6, 4]), torch.tensor([4, 3])
    total, count = 0.0, 0
    for a in attn:
        for i in range(2):
            n_in, n_out = int(ilens[i]), int(olens[i])
            for h in range(2):
                for t in range(n_out):
                    for n in range(n_in):
                        total += (1 - math.exp(-((n / n_in - t / n_out) ** 2) / 0.32)) * float(a[i, h, t, n])
                        count += 1
    assert guided_attention_loss(attn, ilens, olens, 0.4).item() == pytest.approx(total / count, rel=1e-5)
    # Attention on the diagonal costs less than attention off it.
    diagonal = torch.eye(6)[None, None, :, :].expand(1, 1, 6, 6)
    anti = diagonal.flip(-1)
    full = torch.tensor([6])
    assert guided_attention_loss([diagonal], full, full) < 0.1 * guided_attention_loss([anti], full, full)


def test_decoder_inputs_are_every_rth_frame_shifted_right():
    target = torch.arange(2 * 6 * 1, dtype=torch.float32).view(2, 6, 1)
    dec = shift_right_reduced(target, 2)
    assert dec[:, :, 0].tolist() == [[0.0, 1.0, 3.0], [0.0, 7.0, 9.0]]


def test_se_mask_and_delta_estimates():
    raw = random_output(1, 4, 2)
    noisy = torch.randn(1, 4, 2)
    mask = se_estimate(raw, noisy, "mask")
    # A mask on the mel magnitudes: 10^estimate = sigmoid(output) * 10^noisy.
    torch.testing.assert_close(10 ** mask.mel_after, torch.sigmoid(raw.mel_after) * 10 ** noisy)
    torch.testing.assert_close(se_estimate(raw, noisy, "delta").mel_before, noisy + raw.mel_before)
    assert se_estimate(raw, noisy, "target") is raw
    with pytest.raises(ValueError, match="se_decoder_input='source'"):
        mmseq.create_model("speecht5_se_tiny", se_predict="mask")
    with pytest.raises(ValueError, match="for task 'se'"):
        mmseq.create_model("speecht5_vc_tiny", se_decoder_input="source")


def test_a_mask_model_enhances_in_one_pass_by_its_rule():
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_se_tiny", **SMALL, **FAST_CONV, se_predict="mask",
                               se_decoder_input="source", speech_prenet_dropout=0.0).eval()  # always-on otherwise
    g = torch.Generator().manual_seed(0)
    wav, lengths = torch.randn(2, 6000, generator=g) * 0.3, torch.tensor([6000, 5000])
    wav[1, 5000:] = 0
    noisy, frames = SpeechT5LogMel(n_mels=SMALL["num_mel_bins"])(wav, lengths)
    out = enhance_speech(model, wav, lengths)
    assert out.lengths.tolist() == frames.tolist()  # one frame per noisy frame, no stop decision
    # by hand: the decoder reads every r-th noisy frame, the estimate is the mask rule on the noisy frames
    r = model.decoder_postnet.reduction_factor
    padded = torch.nn.functional.pad(noisy, (0, 0, 0, -noisy.shape[1] % r))
    with torch.no_grad():
        raw = model(wav, lengths, padded[:, r - 1 :: r], None).outputs.mel_after
    expected = padded[:, : raw.shape[1]] + torch.nn.functional.logsigmoid(raw) / math.log(10.0)
    for i, n in enumerate(frames.tolist()):
        torch.testing.assert_close(out.mel[i, :n], expected[i, :n])
        assert out.mel[i, n:].abs().sum() == 0


# --- attention probabilities of the first heads -----------------------------------------------------------------

@pytest.mark.parametrize("training", [False, True])
def test_first_head_probabilities_without_changing_the_output(training):
    torch.manual_seed(0)
    mha = MultiheadAttention(16, 4, dropout=0.0).train(training)
    q, mem = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    pad = torch.tensor([[False] * 7, [False] * 5 + [True] * 2])
    bias = torch.randn(2, 4, 5, 7)  # a per-head bias is split between the two kernels
    ref, full = mha(q, mem, padding_mask=pad, attn_bias=bias, need_weights=True)
    out, first = mha(q, mem, padding_mask=pad, attn_bias=bias, need_weights=True, weight_heads=2)
    assert first.shape == (2, 2, 5, 7)
    torch.testing.assert_close(first, full[:, :2])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mha(q, mem, padding_mask=pad, attn_bias=bias)[0], ref, atol=1e-5, rtol=1e-5)
    model = mmseq.create_model("speecht5_tts_tiny", decoder_layerdrop=0.0, speech_prenet_dropout=0.0).eval()
    inputs = model.dummy_inputs()
    heads = model(**inputs, output_attentions=True, attention_heads=2)
    every = model(**inputs, output_attentions=True)
    assert [a.shape[1] for a in heads.cross_attentions] == [2, 2]
    for a, b in zip(heads.cross_attentions, every.cross_attentions):
        torch.testing.assert_close(a, b[:, :2])
    torch.testing.assert_close(heads.outputs.mel_after, model(**inputs).outputs.mel_after, atol=1e-5, rtol=1e-5)


# --- parity with transformers -----------------------------------------------------------------------------------

def _hf_model(cls, tmp_path, **config):
    torch.manual_seed(0)
    hf = cls(hf_config(**config)).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = mmseq.load(tmp_path / "hf", speech_prenet_dropout=0.0).eval()
    return hf, ours


def _mel_batch(lengths=(7, 10), m=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    mel = torch.zeros(len(lengths), max(lengths), m)
    for i, n in enumerate(lengths):
        mel[i, :n] = torch.randn(n, m, generator=g) - 2.0
    return mel, torch.tensor(lengths)


def _hf_labels(mel, lengths, r=2):
    total = math.ceil(mel.shape[1] / r) * r
    labels = torch.full((mel.shape[0], total, mel.shape[2]), -100.0)
    for i, n in enumerate(lengths.tolist()):
        labels[i, :n] = mel[i, :n]
    return labels


@pytest.mark.parametrize("guided", [False, True])
def test_tts_loss_equals_transformers(tmp_path, no_hf_prenet_dropout, guided):
    hf, ours = _hf_model(transformers.SpeechT5ForTextToSpeech, tmp_path, use_guided_attention_loss=guided,
                         guided_attention_loss_num_heads=2, guided_attention_loss_sigma=0.4,
                         guided_attention_loss_scale=10.0)
    ids = torch.tensor([[4, 5, 6, 7, 8, 2], [9, 10, 11, 2, 1, 1]])
    mel, lengths = _mel_batch()
    spk = torch.randn(2, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=ids.ne(1).long(), labels=_hf_labels(mel, lengths),
                 speaker_embeddings=spk).loss
    cfg = SpeechOutputConfig(**SMALL, guided_attention_weight=10.0 if guided else 0.0)
    batch = {"src": ids, "src_lengths": ids.ne(1).sum(1), "mel": mel, "mel_lengths": lengths, "xvector": spk}
    with torch.no_grad():
        loss, metrics = speech_output_loss(ours, batch, cfg)
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    assert ("guided_attention" in metrics) == guided


def test_vc_with_labels_equals_transformers_speech_to_speech(tmp_path, no_hf_prenet_dropout):
    # transformers' SpeechT5ForSpeechToSpeech returns no loss (its loss is None): its spectrogram given `labels`
    # must equal ours, and our loss its SpeechT5SpectrogramLoss applied to its own outputs.
    from transformers.models.speecht5.modeling_speecht5 import SpeechT5SpectrogramLoss, shift_spectrograms_right

    config = dict(use_guided_attention_loss=True, guided_attention_loss_num_heads=2)
    hf, ours = _hf_model(transformers.SpeechT5ForSpeechToSpeech, tmp_path, **config)
    wav = torch.randn(2, 4000, generator=torch.Generator().manual_seed(3)) * 0.3  # unpadded (see test_hf_parity)
    mel, lengths = _mel_batch(seed=4)
    spk = torch.randn(2, 8, generator=torch.Generator().manual_seed(5))
    labels = _hf_labels(mel, lengths)
    with torch.no_grad():
        spectrogram = hf(input_values=wav, labels=labels, speaker_embeddings=spk).spectrogram
        dec_in, _ = shift_spectrograms_right(labels, 2)
        outputs = hf.speecht5(input_values=wav, decoder_input_values=dec_in, speaker_embeddings=spk,
                              output_attentions=True)
        before, after, logits = hf.speech_decoder_postnet(outputs.last_hidden_state)
        enc_mask = torch.ones(2, outputs.encoder_last_hidden_state.shape[1], dtype=torch.long)
        ref = SpeechT5SpectrogramLoss(hf_config(**config))(enc_mask, before, after, logits, labels,
                                                            outputs.cross_attentions)
        cfg = SpeechOutputConfig(**SMALL, guided_attention_weight=10.0)
        batch = {"src": wav, "src_lengths": torch.tensor([4000, 4000]), "mel": mel, "mel_lengths": lengths,
                 "xvector": spk}
        loss, _ = speech_output_loss(ours, batch, cfg)
        target_pad = torch.nn.functional.pad(mel, (0, 0, 0, labels.shape[1] - mel.shape[1]))
        from mmseq.tasks.speecht5.speech import shift_right_reduced as shift

        mine = ours(wav, None, shift(target_pad, 2), None, speaker_embeddings=spk).outputs.mel_after
    assert (mine - spectrogram).abs().max().item() <= 1e-4
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)


# --- gradients --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, extra", [("tts", {}), ("vc", {}), ("se", {"se_predict": "delta",
                                                                          "se_decoder_input": "source"})])
def test_every_trained_parameter_gets_a_gradient(kind, extra):
    torch.manual_seed(0)
    args = dict(SMALL, encoder_layerdrop=0.0, decoder_layerdrop=0.0)
    if kind != "tts":
        args.update(FAST_CONV)
    model = mmseq.create_model(f"speecht5_{kind}_tiny", **args, **extra).train()
    g = torch.Generator().manual_seed(0)
    mel, lengths = _mel_batch()
    if kind == "tts":
        src, src_lengths = torch.tensor([[4, 5, 6, 7, 2], [8, 9, 2, 1, 1]]), torch.tensor([5, 3])
    else:
        src, src_lengths = torch.randn(2, 6000, generator=g) * 0.3, torch.tensor([6000, 5000])
        src[1, 5000:] = 0
    batch = {"src": src, "src_lengths": src_lengths, "mel": mel, "mel_lengths": lengths,
             "xvector": torch.randn(2, 8, generator=g), "source_mel": mel + 0.1}
    cfg = SEConfig(**SMALL) if kind == "se" else SpeechOutputConfig(**SMALL, guided_attention_weight=1.0)
    loss, _ = speech_output_loss(model, batch, cfg)
    loss.backward()
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, missing


# --- data errors, a tiny run and the pipeline --------------------------------------------------------------------



@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_speech_output_corpus(tmp_path_factory.mktemp("speech_output"))


def test_speaker_vectors_xvectors_and_their_errors(corpus, tmp_path):
    import json
    import shutil

    with pytest.raises(InputError, match=r"train\.jsonl utterance .*`mmseq data embed-speakers"):
        build_task("speecht5_tts", {"corpus": str(corpus)})
    with pytest.raises(ConfigError, match="task_args.speaker_embedding"):
        build_task("speecht5_tts", {"corpus": str(corpus), "speaker_embedding": "random"})
    # speaker_random: one fixed vector per speaker; VC takes the target speaker's.
    vc = build_task("speecht5_vc", {"corpus": str(corpus), "speaker_embedding": "speaker_random"}).train_set
    tts = build_task("speecht5_tts", {"corpus": str(corpus), "speaker_embedding": "speaker_random"}).train_set
    by_speaker = {u.speaker: tts[i]["xvector"] for i, u in enumerate(tts.utterances)}
    assert not torch.equal(by_speaker["s1"], by_speaker["s2"])
    for i, u in enumerate(vc.utterances):
        torch.testing.assert_close(vc[i]["xvector"], by_speaker[u.extra["target_speaker"]])
    # x-vectors named in the main manifests (extra.xvector, relative to its folder): TTS reads its own, VC finds
    # its target audio's.
    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy, ignore=shutil.ignore_patterns("*.pt"))
    (copy / "xvectors").mkdir()
    for split in ("train", "dev", "test"):
        rows = [json.loads(line) for line in (copy / f"{split}.jsonl").read_text().splitlines()]
        for k, row in enumerate(rows):
            np.save(copy / "xvectors" / f"{row['id']}.npy", np.full(512, k + 1.0, dtype=np.float32))
            row["extra"] = {"xvector": f"xvectors/{row['id']}.npy"}
        (copy / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tts = build_task("speecht5_tts", {"corpus": str(copy)}).train_set
    vc = build_task("speecht5_vc", {"corpus": str(copy)}).train_set
    own = {Path(u.audio).resolve(): tts[i]["xvector"] for i, u in enumerate(tts.utterances)}
    for i, u in enumerate(vc.utterances):
        torch.testing.assert_close(vc[i]["xvector"], own[Path(u.target_audio).resolve()])
    with pytest.raises(InputError, match=r"xvectors/s1_0\.npy' has 512 values, the task expects 8"):
        build_task("speecht5_tts", {"corpus": str(copy), "speaker_embedding_dim": 8})


@pytest.mark.slow
def test_tiny_tts_run_speaks_through_the_pipeline(corpus, tmp_path):
    from mmseq.train.config import RunConfig, TrainerConfig
    from mmseq.train.loop import train

    task_args = {"corpus": str(corpus), "speaker_embedding": "speaker_random", "eval_utterances": 1, "samples": 1,
                 "max_len_ratio": 4.0}
    vocab = build_task("speecht5_tts", task_args).info["vocab_size"]
    cfg = RunConfig(task="speecht5_tts", model="speecht5_tts_tiny", task_args=task_args,
                    model_args={"vocab_size": vocab, "num_mel_bins": 80, "speaker_embedding_dim": 512},
                    trainer=TrainerConfig(max_steps=3, batch_size=4, val_every=0, save_every=0, log_every=1,
                                          out_dir=str(tmp_path / "run"), progress=False))
    summary = train(cfg)
    assert math.isfinite(summary["val"]["loss"]) and "length_ratio" in summary["test"]
    run = tmp_path / "run"
    for name in ("alignment_0.png", "mel_0.png", "loss.png", "metrics.json"):
        assert (run / name).is_file(), name
    assert len(list((run / "samples").glob("*_generated.wav"))) == 1
    tts = mmseq.pipeline("tts", model=run / "best", device="cpu")
    assert len(tts.model.tokenizer) == vocab
    wav, rate = tts("abc da", speaker_embeddings=np.ones(512, dtype=np.float32),
                     min_len_ratio=2.0, max_len_ratio=4.0)  # Griffin-Lim needs a few frames
    assert rate == 16000 and wav.ndim == 1 and len(wav) > 0 and np.isfinite(wav).all()
