"""SpeechT5 training steps against transformers: ASR, TTS and VC at base size, batch 8, the same weights.

One training step here is what the training loop runs before its optimizer step: gradients set to None
(``zero_grad(set_to_none=True)``, so backward writes them instead of adding to the last step's), the forward pass,
the task's loss and the backward pass, with dropout on (train mode) on both sides; the optimizer step (the same
AdamW over the same parameters on both sides) is left out. LayerDrop is off on both sides (SpeechT5-base skips each
layer with probability 0.1 while training): each side draws its own skips, so with it on a step's work differs
between the two sides by whole layers at random, more than the difference being measured. Each side
computes the loss the way its own code does:

* ASR: transformers' `SpeechT5ForSpeechToText(labels=...)` cross-entropy; mmseq's `speech_to_text_loss` with the
  CTC weight 0 (transformers' model has no CTC head), i.e. the same cross-entropy per target token.
* TTS: transformers' `SpeechT5ForTextToSpeech(labels=...)` loss (L1 before / after the post-net, stop BCE, guided
  attention on 2 heads, scale 10); mmseq's `speech_output_loss` with the same settings.
* VC: transformers' `SpeechT5ForSpeechToSpeech(labels=...)` computes no loss, so its outputs go through its own
  `SpeechT5SpectrogramLoss` (no guided attention); mmseq's `speech_output_loss` likewise.

The last two columns bound what any implementation of the same fp32 work could gain: the FLOPs of one mmseq
step as ``torch.utils.flop_counter`` counts them (matrix products and convolutions, forward and backward; both
sides run the same products), over the machine's measured fp32 matmul peak, is the time the step would take if it
were nothing but products at peak; transformers' time over that floor is the largest speed-up available without
doing less arithmetic or doing it in lower precision.

Inputs: 8 waveforms of 3 s (ASR, VC; equal lengths, so neither side pads), 8 texts of 60 tokens (TTS), 30 target
tokens (ASR), 200 target mel frames (TTS, VC), random 512-d speaker vectors.

    python bench/speecht5_training.py [--repeats 3] [--threads N] [--tasks asr,tts,vc]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import mmseq
from mmseq.tasks.speecht5.speech import SpeechOutputConfig, speech_output_loss
from mmseq.tasks.speecht5.text import speech_to_text_loss
from torch.utils.flop_counter import FlopCounterMode

from timing import machine_line, matmul_peak, median_times  # bench/timing.py

BATCH, SECONDS, TEXT_TOKENS, TARGET_TOKENS, FRAMES = 8, 3, 60, 30, 200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--tasks", default="asr,tts,vc")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import (SpeechT5Config, SpeechT5ForSpeechToSpeech, SpeechT5ForSpeechToText,
                              SpeechT5ForTextToSpeech)
    from transformers.models.speecht5.modeling_speecht5 import SpeechT5SpectrogramLoss

    print(f"{machine_line()}; median of {args.repeats}; batch {BATCH}, SpeechT5-base sizes")
    peak = matmul_peak()
    print(f"fp32 matmul peak for the floor column: {peak / 1e9:.0f} GFLOP/s")
    print("\n| task | transformers s/step | mmseq s/step | speed-up | loss transformers / mmseq (dropout on) "
          "| GFLOP/step | floor s/step | transformers / floor |")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    tmp = Path(tempfile.mkdtemp())
    g = torch.Generator().manual_seed(0)
    # base; guided attention on (2 heads, sigma 0.4, scale 10); no LayerDrop (see the module notes)
    config = SpeechT5Config(encoder_layerdrop=0.0, decoder_layerdrop=0.0)
    wav = torch.randn(BATCH, 16000 * SECONDS, generator=g) * 0.1
    wav_lengths = torch.full((BATCH,), wav.shape[1])
    mel = torch.randn(BATCH, FRAMES, config.num_mel_bins, generator=g) - 4.0
    mel_lengths = torch.full((BATCH,), FRAMES)
    spk = torch.nn.functional.normalize(torch.randn(BATCH, config.speaker_embedding_dim, generator=g), dim=-1)

    def step(model, loss_fn):
        def run():
            model.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            return loss.item()
        return run

    def compare(name, hf_model, ours, hf_loss, ours_loss):
        hf_model.train()
        ours.train()
        hf_run, ours_run = step(hf_model, hf_loss), step(ours, ours_loss)
        hf_s, ours_s = median_times([hf_run, ours_run], args.repeats)
        losses = f"{hf_run():.3f} / {ours_run():.3f}"
        with FlopCounterMode(display=False) as counter:
            ours_run()
        flops = counter.get_total_flops()
        floor = flops / peak
        print(f"| {name} | {hf_s:.2f} | {ours_s:.2f} | {hf_s / ours_s:.2f}x | {losses} | {flops / 1e9:.0f} "
              f"| {floor:.2f} | {hf_s / floor:.2f}x |", flush=True)

    tasks = args.tasks.split(",")
    if "asr" in tasks:
        torch.manual_seed(0)
        hf = SpeechT5ForSpeechToText(config)
        hf.save_pretrained(tmp / "asr")
        ours = mmseq.load(tmp / "asr")
        target = torch.randint(4, 80, (BATCH, TARGET_TOKENS), generator=g)
        target[:, -1] = 2  # </s>
        dec_in = torch.cat([torch.full((BATCH, 1), 2), target[:, :-1]], dim=1)  # transformers starts with </s>
        batch = {"audio": wav, "audio_lengths": wav_lengths, "dec_in": dec_in, "target": target,
                 "target_lengths": torch.full((BATCH,), TARGET_TOKENS)}
        compare(f"ASR, {BATCH} x {SECONDS} s -> {TARGET_TOKENS} tokens", hf, ours,
                lambda: hf(input_values=wav, labels=target).loss,
                lambda: speech_to_text_loss(ours, batch, ce_weight=1.0, ctc_weight=0.0)[0])
        del hf, ours

    if "tts" in tasks:
        torch.manual_seed(0)
        hf = SpeechT5ForTextToSpeech(config)
        hf.save_pretrained(tmp / "tts")
        ours = mmseq.load(tmp / "tts")
        ids = torch.randint(4, 80, (BATCH, TEXT_TOKENS), generator=g)
        ids[:, -1] = 2
        cfg = SpeechOutputConfig(guided_attention_weight=config.guided_attention_loss_scale,
                                 guided_attention_heads=config.guided_attention_loss_num_heads,
                                 guided_attention_sigma=config.guided_attention_loss_sigma)
        batch = {"src": ids, "src_lengths": torch.full((BATCH,), TEXT_TOKENS), "mel": mel, "mel_lengths": mel_lengths,
                 "xvector": spk}
        compare(f"TTS, {BATCH} x {TEXT_TOKENS} tokens -> {FRAMES} frames (guided attention)", hf, ours,
                lambda: hf(input_ids=ids, attention_mask=torch.ones_like(ids), labels=mel,
                           speaker_embeddings=spk).loss,
                lambda: speech_output_loss(ours, batch, cfg)[0])
        del hf, ours

    if "vc" in tasks:
        torch.manual_seed(0)
        hf = SpeechT5ForSpeechToSpeech(config)
        hf.save_pretrained(tmp / "vc")
        ours = mmseq.load(tmp / "vc")
        hf_config = SpeechT5Config(use_guided_attention_loss=False, encoder_layerdrop=0.0, decoder_layerdrop=0.0)
        criterion = SpeechT5SpectrogramLoss(hf_config)
        from transformers.models.speecht5.modeling_speecht5 import shift_spectrograms_right

        def hf_vc_loss():
            dec_in, _ = shift_spectrograms_right(mel, config.reduction_factor)
            out = hf.speecht5(input_values=wav, decoder_input_values=dec_in, speaker_embeddings=spk)
            before, after, logits = hf.speech_decoder_postnet(out.last_hidden_state)
            enc_mask = torch.ones(BATCH, out.encoder_last_hidden_state.shape[1], dtype=torch.long)
            return criterion(enc_mask, before, after, logits, mel, None)

        cfg = SpeechOutputConfig(guided_attention_weight=0.0)
        batch = {"src": wav, "src_lengths": wav_lengths, "mel": mel, "mel_lengths": mel_lengths, "xvector": spk}
        compare(f"VC, {BATCH} x {SECONDS} s -> {FRAMES} frames", hf, ours, hf_vc_loss,
                lambda: speech_output_loss(ours, batch, cfg)[0])


if __name__ == "__main__":
    main()
