"""SpeechT5 pre-training throughput: speech and text training steps of ``speecht5_pretrain`` (mmseq only -- no
other library pre-trains SpeechT5 but the fairseq original, which is not installed here).

One step is what the training loop runs before its optimizer step: gradients set to None, the forward pass and the
task's loss (``PretrainLoss``: masked unit CE + feature penalty + mel reconstruction for speech; BART denoising CE
for text; the codebook's diversity loss for both) and the backward pass, in train mode. Span masks, text noise and
codebook positions are drawn as in training. The table gives utterances (speech) or text tokens (text) per second
and the step's matrix-product FLOPs (``torch.utils.flop_counter``) over the machine's measured fp32 matmul peak.

Sizes: ``--size quick`` is the quick recipe's model (6 x 256 encoder, 3 x 256 decoder, log-mel front-end, 11.8 M
parameters); ``--size base`` SpeechT5-base (waveform convolutions, 12 x 768 / 6 x 768). Inputs: ``--batch``
waveforms of ``--seconds`` (equal lengths) with their log-mel targets and unit labels; ``--batch`` sentences of 60
characters.

    python bench/speecht5_pretrain.py [--size quick|base] [--batch 16] [--seconds 3] [--repeats 3] [--threads N]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

import mmseq
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.tasks.speecht5.pretrain import PretrainConfig, PretrainLoss

from timing import machine_line, matmul_peak, median_time  # bench/timing.py

SIZES = {
    "quick": dict(vocab_size=34, num_units=100, dim=256, encoder_layers=6, encoder_heads=4, encoder_ffn_dim=1024,
                  decoder_layers=3, decoder_heads=4, decoder_ffn_dim=1024, speech_frontend="logmel",
                  pos_conv_kernel=64, relative_position_distance=64),
    "base": dict(vocab_size=34, num_units=500),
}
TEXT_CHARS = 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="quick")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_pretrain_base", mask_time_prob=0.0, encoder_layerdrop=0.0,
                               decoder_layerdrop=0.0, **SIZES[args.size]).train()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    tokenizer = SpeechT5CharTokenizer.train(["abcdefghijklmnopqrstuvwxyz' the"])
    loss = PretrainLoss(PretrainConfig(text_train="unused"), tokenizer)

    samples = int(args.seconds * 16000)
    wav = torch.randn(args.batch, samples) * 0.1
    mel = 1 + samples // 256  # SpeechT5LogMel's frames (hop 256, centred)
    frames = int(model.speech_encoder_prenet.output_lengths(torch.tensor([samples]))[0])
    speech = {"speech": {"audio": wav, "audio_lengths": torch.full((args.batch,), samples),
                         "units": torch.randint(0, model.num_units, (args.batch, frames)),
                         "unit_lengths": torch.full((args.batch,), frames),
                         "mel": torch.randn(args.batch, mel, 80), "mel_lengths": torch.full((args.batch,), mel),
                         "xvector": torch.randn(args.batch, 512)}}
    sentence = [tokenizer.bos_id, *tokenizer.encode(("the cat " * 10)[:TEXT_CHARS])]
    ids = torch.tensor([sentence] * args.batch)
    text = {"text": {"ids": ids, "lengths": torch.full((args.batch,), ids.shape[1])}}

    def step(batch):
        def run():
            model.zero_grad(set_to_none=True)
            value, _ = loss(model, batch)
            value.backward()
        return run

    peak = matmul_peak()
    print(f"{machine_line()}; median of {args.repeats}; {args.size} size ({params:.1f} M parameters), batch "
          f"{args.batch}: {args.seconds:g} s utterances ({frames} encoder frames, {mel} mel frames), "
          f"{ids.shape[1]}-token sentences")
    print("| batch | step (s) | items / s | GFLOP per step | share of the matmul peak |")
    print("|---|---|---|---|---|")
    for name, batch, items, unit in (("speech", speech, args.batch, "utterances"),
                                     ("text", text, int(ids.numel()), "tokens")):
        seconds = median_time(step(batch), args.repeats)
        with FlopCounterMode(display=False) as counter:
            step(batch)()
        flops = counter.get_total_flops()
        print(f"| {name} | {seconds:.3f} | {items / seconds:.1f} {unit} | {flops / 1e9:.1f} | "
              f"{flops / seconds / peak:.2f} |")


if __name__ == "__main__":
    main()
