"""Where one batch-1 SpeechT5 TTS decoder step spends its time beyond streaming the weights (mmseq only).

On SpeechT5-base sizes with random weights, after 45 generated steps (the cache holds 45 positions), times in turn,
round by round (``timing.median_times``):
  * ``products``: the 36 matrix-vector products of one decoder step (``addmv`` through the fused weights, bias
    fused; for the cross-attention, the matrices folded from the 40-token memory), back to back: what the step
    must stream;
  * ``products + layer norm``: the same with a 768-wide layer norm after each product, and ``layer norms``: those
    36 layer norms alone. The difference between the two shows what a small operator costs when it runs between
    weight streams rather than in a tight loop;
  * ``decode_step``: the decoder's one-step path (``mmseq.nn.incremental.decode_step``);
  * ``generation step``: speech pre-net, decoder and post-net heads, as ``generate_speech`` runs them.

Everything runs under ``torch.inference_mode``, as generation does (``mmseq.generation.mode``), except
``generation step under no_grad``: the same step with its own cache, under ``torch.no_grad`` instead, which shows
what inference mode saves.

Usage: python bench/speecht5_step_breakdown.py [--repeats 31] [--threads N]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

import mmseq  # noqa: F401  (registers the models)
from mmseq.generation.engine import Encoded
from mmseq.nn.incremental import StepDecoder, decode_step
from mmseq.registry import create_model
from timing import machine_line, median_times  # bench/timing.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = create_model("speecht5_tts_base").eval()
    prenet, postnet, decoder = model.decoder_prenet, model.decoder_postnet, model.decoder
    prenet.dropout = 0.0
    ids, speaker = torch.randint(4, 80, (1, 40)), torch.randn(1, 512)

    def warm_cache():  # the encoder output and a decoder cache holding 45 generated steps, as generation runs
        enc = Encoded(model, ids, torch.tensor([40]))
        cache, stepper = decoder.new_cache(), StepDecoder(decoder)
        conditioning = prenet.speaker_conditioning(speaker)
        last = torch.zeros(1, 1, postnet.num_mel_bins)
        for _ in range(45):
            hidden = prenet.step(last[:, 0], cache.length, conditioning)
            out = stepper(hidden, cache, enc.memory, enc.padding_mask)
            last = postnet.frames(out)[:, -1:, :]
        return enc, cache, conditioning, last, hidden, stepper

    with torch.inference_mode():
        enc, cache, conditioning, last, hidden, stepper = warm_cache()
    with torch.no_grad():  # ordinary tensors: a step under no_grad may not write into inference tensors
        plain = warm_cache()
    fused, x = stepper._fused, hidden[:, 0]
    mats = []
    for lw, cross in zip(fused.layers, cache.cross_attn):
        if cross.derived:  # folded cross-attention (a 40-token text): these matrices replace its projections
            score_w, score_b, value_w = cross.derived  # the step adds the residual in value_w's addmv
            cross_mats = ((score_w, score_b), (value_w, torch.zeros(value_w.shape[0])))
        else:
            cross_mats = ((lw.cross_q_w, lw.cross_q_b), (lw.cross_out_w, lw.cross_out_b))
        for w, b in ((lw.qkv_w, lw.qkv_b), (lw.out_w, lw.out_b), *cross_mats, (lw.fc1_w, lw.fc1_b),
                     (lw.fc2_w, lw.fc2_b)):
            mats.append((w, b, torch.randn(w.shape[1])))
    norm = torch.randn(1, x.shape[1])

    def rewind(cache=cache) -> None:  # drop the position a timed step appended: every call sees 45 cached ones
        for c in cache.self_attn:
            c.length -= 1

    def products():
        for w, b, v in mats:
            torch.addmv(b, w, v)

    def products_and_norms():
        for w, b, v in mats:
            torch.addmv(b, w, v)
            F.layer_norm(norm, norm.shape[1:])

    def norms():
        for _ in mats:
            F.layer_norm(norm, norm.shape[1:])

    def one_decode_step():
        decode_step(fused, x, cache.self_attn, cache.cross_attn, None)
        rewind()

    heads = postnet.step_heads()

    def generation_step(enc=enc, cache=cache, conditioning=conditioning, last=last, stepper=stepper):
        h = prenet.step(last[:, 0], cache.length, conditioning)
        o = stepper(h, cache, enc.memory, enc.padding_mask)
        torch.sigmoid(heads(o[:, 0])[1]).sum(-1).tolist()
        rewind(cache)

    def generation_step_no_grad():
        with torch.inference_mode(False), torch.no_grad():
            generation_step(*plain[:4], stepper=plain[5])

    cases = {"products (36 addmv)": products, "products + layer norm after each": products_and_norms,
             "layer norms alone (36)": norms, "decode_step": one_decode_step, "generation step": generation_step,
             "generation step under no_grad": generation_step_no_grad}
    with torch.inference_mode():
        times = dict(zip(cases, median_times(list(cases.values()), args.repeats)))
    print(f"{machine_line()}; median of {args.repeats}, ms\n")
    for name, t in times.items():
        print(f"{name:34s} {1e3 * t:7.2f}")
    p, pn, n = (times[k] for k in list(cases)[:3])
    print(f"\na layer norm costs {1e6 * n / len(mats):.1f} µs in a tight loop and {1e6 * (pn - p) / len(mats):.1f} µs "
          f"between weight streams")
    print(f"decode_step / its products: {times['decode_step'] / p:.2f}; "
          f"generation step / products: {times['generation step'] / p:.2f} "
          f"({times['generation step under no_grad'] / p:.2f} under no_grad)")


if __name__ == "__main__":
    main()
