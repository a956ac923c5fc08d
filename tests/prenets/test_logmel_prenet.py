"""The log-mel pre-net: features equal librosa's, output lengths are exact, padding never changes a row's valid
outputs, SpecAugment uses the mask embedding, and SpeechT5 builds, trains and round-trips with it (but does not
export to transformers)."""

import librosa
import numpy as np
import pytest
import torch

import mmseq
from mmseq.errors import CheckpointError, InputError
from mmseq.prenets.logmel import LogMelPrenet


def small_prenet(**kwargs) -> LogMelPrenet:
    torch.manual_seed(0)
    args = dict(dim=16, num_mel_bins=20, channels=4, pos_conv_kernel=8, pos_conv_groups=2, mask_time_length=2)
    return LogMelPrenet(**{**args, **kwargs}).eval()


def test_features_equal_librosa_log_mel():
    prenet = small_prenet(num_mel_bins=80)
    wav = torch.randn(1, 4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.1
    ours = prenet.features(wav)[0].double()
    # numpy framing + periodic Hann + rfft, then librosa's Slaney filterbank
    x = wav[0].numpy()
    frames = np.stack([x[t * 160 : t * 160 + 400] for t in range(1 + (4000 - 400) // 160)])
    power = np.abs(np.fft.rfft(frames * np.hanning(401)[:-1], n=400)) ** 2
    filters = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80, fmin=0.0, fmax=8000.0, htk=False, norm="slaney")
    reference = torch.from_numpy(np.log(np.maximum(power @ filters.T, 1e-10)))
    assert ours.shape == reference.shape == (1 + (4000 - 400) // 160, 80)
    torch.testing.assert_close(ours, reference, atol=2e-4, rtol=1e-5)


def test_output_lengths_count_the_valid_frames_exactly():
    prenet = small_prenet()
    rf, hop = prenet.receptive_field, 160
    assert rf == 400 + 6 * hop and prenet.downsample_rate == 640
    for n in [rf, rf + 1, rf + hop - 1, rf + hop, rf + 2 * hop, rf + 2 * hop + 7, 16000, 16001, 17279]:
        hidden, lengths = prenet(torch.randn(1, n), torch.tensor([n]))
        assert int(lengths[0]) == hidden.shape[1]
        frames = (n - 400) // hop + 1
        assert int(lengths[0]) == ((frames - 3) // 2 + 1 - 3) // 2 + 1
    assert int(prenet.output_lengths(torch.tensor([rf]))[0]) == 1
    assert int(prenet.output_lengths(torch.tensor([rf + 2 * prenet.downsample_rate - 1]))[0]) == 2
    assert int(prenet.output_lengths(torch.tensor([rf + 2 * prenet.downsample_rate]))[0]) == 3
    with pytest.raises(InputError, match=f"{rf - 1} samples is shorter than the log-mel pre-net's receptive field"):
        prenet(torch.randn(1, rf - 1))
    with pytest.raises(InputError, match="float tensor \\[batch, samples\\]"):
        prenet(torch.randn(1, 1, rf))


@pytest.mark.parametrize("utterance_norm", [True, False])
def test_padding_does_not_change_valid_outputs(utterance_norm):
    prenet = small_prenet(utterance_norm=utterance_norm)
    g = torch.Generator().manual_seed(1)
    lengths = torch.tensor([9000, 5123, 1360, 7777])
    wav = torch.randn(4, 9000, generator=g) * 0.1
    wav[torch.arange(9000)[None, :] >= lengths[:, None]] = 0.5  # padding that is not even silence
    with torch.no_grad():
        batch, out_lengths = prenet(wav, lengths)
        for row, n in enumerate(lengths.tolist()):
            alone, alone_lengths = prenet(wav[row : row + 1, :n])
            assert int(alone_lengths[0]) == int(out_lengths[row]) == alone.shape[1]
            torch.testing.assert_close(batch[row, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-5)


def test_utterance_normalisation_uses_valid_frames_only():
    prenet = small_prenet()
    wav = torch.randn(2, 6000, generator=torch.Generator().manual_seed(2)) * 0.1
    lengths = torch.tensor([6000, 3000])
    frames = prenet.features.num_frames(lengths)
    feats = prenet._normalise(prenet.features(wav), frames)
    short = feats[1, : int(frames[1])]
    torch.testing.assert_close(short.mean(0), torch.zeros(20), atol=1e-4, rtol=0)
    torch.testing.assert_close(short.var(0, unbiased=False), torch.ones(20), atol=1e-3, rtol=0)
    assert bool((feats[1, int(frames[1]) :] == 0).all())


def test_time_mask_replaces_steps_by_the_mask_embedding():
    prenet = small_prenet(pos_conv_kernel=0)  # positions only from the sinusoid: masked steps are input-free
    g = torch.Generator().manual_seed(3)
    wav_a, wav_b = torch.randn(1, 8000, generator=g), torch.randn(1, 8000, generator=g)
    steps = int(prenet.output_lengths(torch.tensor([8000]))[0])
    mask = torch.zeros(1, steps, dtype=torch.bool)
    mask[0, 3:6] = True
    with torch.no_grad():
        a, _ = prenet(wav_a, time_mask=mask)
        b, _ = prenet(wav_b, time_mask=mask)
    torch.testing.assert_close(a[0, 3:6], b[0, 3:6])
    assert not torch.allclose(a[0, :3], b[0, :3])
    prenet.train()
    torch.manual_seed(0)
    wav, lengths = prenet.dummy_inputs(2)
    hidden, _ = prenet(wav, lengths)
    hidden.square().sum().backward()
    assert prenet.masked_spec_embed.grad is not None and prenet.masked_spec_embed.grad.abs().sum() > 0


TINY = dict(speech_frontend="logmel", logmel_bins=16, logmel_channels=4, encoder_layerdrop=0.0,
            decoder_layerdrop=0.0)


@pytest.mark.parametrize("task", ["asr", "vc", "sid"])
def test_speecht5_with_logmel_trains_every_parameter(task):
    torch.manual_seed(0)
    model = mmseq.create_model(f"speecht5_{task}_tiny", **TINY, **({"ctc": True} if task == "asr" else {}))
    prenet = model.prenet if task == "sid" else model.encoder_prenet
    assert isinstance(prenet, LogMelPrenet)
    assert model.downsample_rate == 640 and prenet.modality == "waveform"
    inputs = model.dummy_inputs(2)
    model.train()
    out = model(**inputs)
    tensors = [out] if isinstance(out, torch.Tensor) else [
        t for t in (getattr(out, "outputs", None), getattr(out, "encoder_outputs", None)) if t is not None]
    flat = []
    for t in tensors:
        flat += [v for v in (t.__dict__.values() if hasattr(t, "__dataclass_fields__") else [t])
                 if isinstance(v, torch.Tensor) and v.is_floating_point()]
    g = torch.Generator().manual_seed(0)
    sum((v * torch.randn(v.shape, generator=g)).sum() for v in flat).backward()
    without = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not without, without


def test_speecht5_logmel_round_trips_and_refuses_transformers_export(tmp_path):
    from mmseq.interop.hf_speecht5 import export_hf_speecht5

    model = mmseq.create_model("speecht5_asr_tiny", **TINY).eval()
    inputs = model.dummy_inputs(2)
    mmseq.save_pretrained(model, tmp_path / "m")
    loaded = mmseq.load(tmp_path / "m").eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).outputs, model(**inputs).outputs, rtol=0, atol=0)
    with pytest.raises(CheckpointError, match="speech_frontend='logmel' has no transformers equivalent"):
        export_hf_speecht5(model, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()
    with pytest.raises(ValueError, match="speech_frontend must be one of"):
        mmseq.create_model("speecht5_asr_tiny", speech_frontend="fbank")
