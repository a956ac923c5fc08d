"""Shared helpers of the SpeechT5 parity tests."""

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
def hf_config(**overrides):
    """A small SpeechT5 config with every size dimension shrunk (same code paths as base)."""
    base = dict(vocab_size=81, hidden_size=32, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=64,
                decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=64, conv_dim=[32, 32, 32],
                conv_kernel=[10, 3, 3], conv_stride=[5, 2, 2], num_conv_pos_embeddings=16,
                num_conv_pos_embedding_groups=2, encoder_max_relative_position=16, speech_decoder_prenet_units=16,
                speaker_embedding_dim=8, speech_decoder_postnet_units=16, num_mel_bins=16,
                max_text_positions=64, max_speech_positions=256)
    return transformers.SpeechT5Config(**{**base, **overrides})


def randomize_batchnorm(model):
    """Give BatchNorm running statistics non-trivial values so the post-net parity is meaningful."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


# --- a micro corpus for the speech-output tasks (TTS / VC / SE) ---------------------------------------------------

RATE = 16000
LETTERS = {"a": 300.0, "b": 500.0, "c": 800.0, "d": 1200.0}
SPEAKERS = {"train": {"s1": 1.0, "s2": 1.3}, "dev": {"s3": 1.1, "s4": 0.9}, "test": {"s5": 1.2, "s6": 0.8}}


def make_speech_output_corpus(root, per_speaker=3, seed=0):
    """A micro corpus in the synthetic corpus' layout: ``{split}.jsonl`` (text of letters a-d, each a 80 ms tone
    whose pitch the speaker scales), ``vc/`` (the same text read by the split's other speaker) and ``se/`` (the
    clean reading plus noise). Learnable in a few steps, written in a fraction of a second."""
    import json

    import soundfile as sf

    rng = np.random.default_rng(seed)
    for sub in ("wav", "vc", "se/wav"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for split, speakers in SPEAKERS.items():
        texts = [" ".join("".join(rng.choice(list(LETTERS), int(rng.integers(2, 4)))) for _ in range(2))
                 for _ in range(per_speaker)]
        lines, vc, se = [], [], []
        for speaker, pitch in speakers.items():
            for i, text in enumerate(texts):
                pieces = []
                for ch in text:
                    n = int((0.08 if ch != " " else 0.05) * RATE)
                    t = np.arange(n) / RATE
                    pieces.append(0.3 * np.sin(2 * np.pi * LETTERS[ch] * pitch * t) if ch != " " else np.zeros(n))
                wav = np.concatenate([np.zeros(800), *pieces, np.zeros(800)])
                wav = (wav + 0.003 * rng.standard_normal(len(wav))).astype(np.float32)  # no digital silence
                name, uid = f"wav/{speaker}_{i}.wav", f"{speaker}_{i}"
                sf.write(root / name, wav, RATE)
                noisy = (wav + 0.05 * rng.standard_normal(len(wav))).astype(np.float32)
                sf.write(root / f"se/wav/{uid}.wav", noisy, RATE)
                lines.append({"id": uid, "audio": name, "duration": len(wav) / RATE, "text": text, "speaker": speaker})
                se.append({"id": uid + "_noisy", "audio": f"wav/{uid}.wav", "duration": len(wav) / RATE, "text": text,
                           "speaker": speaker, "target_audio": "../" + name, "snr": 10.0})
        for line in lines:
            other = next(s for s in speakers if s != line["speaker"])
            target = next(x for x in lines if x["speaker"] == other and x["text"] == line["text"])
            vc.append({**line, "id": f"{line['id']}_to_{other}", "audio": "../" + line["audio"],
                       "target_audio": "../" + target["audio"],
                       "extra": {"target_speaker": other, "target_duration": target["duration"]}})
        for sub, rows in (("", lines), ("vc/", vc), ("se/", se)):
            (root / f"{sub}{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows))
    return root
