"""mmseq SpeechT5 against transformers' SpeechT5 on the same base-size (random) weights, in one process.

Reports medians of several runs and ratios (transformers time / mmseq time: > 1 means mmseq is faster):
  * TTS generation, batch 1 (a fixed number of decoder steps: the stop threshold is out of reach) and a batch
    of 8 texts of different lengths, fp32; and mmseq with a bf16 or fp16 decoder against transformers in fp32;
  * ASR greedy (batch 1) and beam search (beam 5, batch 8), with the encoder timed alone on both sides;
  * a training forward+backward (ASR, teacher-forced), with its achieved FLOP/s against a measured matmul peak;
  * the weight-streaming bound of one batch-1 TTS decoder step: a matrix-vector product through every weight a
    step reads (speech pre-net, decoder layers, post-net heads).
Outputs are checked for identity (fp32) and for relative L1 (bf16 mel against fp32 mel). The cases compared in a
row are timed in turn, one call each per round (``timing.median_times``), so a slow spell of a shared host hits
both sides alike.

Usage: python bench/speecht5_vs_transformers.py [--repeats 5] [--steps 60] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

import mmseq
from mmseq.inference import set_precision
from timing import machine_line, matmul_peak, median_times  # bench/timing.py


# A random ASR model ends after a few tokens; with an end token it can never emit, both sides decode every
# requested step, so the ASR rows time decoding and not only the encoder.
_NO_EOS = 10_000
# Characters of the batch-1 TTS text (= encoder positions, which mmseq's one-row step folds cross-attention into).
_TTS_TEXT_LEN = 40


def row(name: str, hf_s: float, ours_s: float, unit_count: int, unit: str, note: str = "") -> None:
    print(f"| {name} | {1e3 * hf_s / unit_count:.2f} | {1e3 * ours_s / unit_count:.2f} | {hf_s / ours_s:.2f}x | "
          f"ms/{unit} | {note} |")


def decoder_step_bound(model, dtype: torch.dtype = torch.float32, folded_memory: int = 0) -> Callable[[], None]:
    """A function streaming every weight one TTS decoder step reads, in ``dtype``, through a batch-1
    matrix-vector product: the speech pre-net, every decoder layer except the cross-attention key/value
    projections (computed once per utterance), and the post-net's frame and stop heads. Its time is the bound.

    ``folded_memory`` = S > 0 streams, instead of each cross-attention's query and output projections, the two
    ``[heads * S, D]`` matrices that mmseq's one-row step folds them into for a memory of S positions
    (``mmseq.nn.incremental.fold_cross_attention``): what that step actually reads."""
    weights = []
    for name, m in model.named_modules():
        if not isinstance(m, torch.nn.Linear) or not name.startswith(
                ("decoder.", "decoder_prenet.", "decoder_postnet.feat_out", "decoder_postnet.prob_out")):
            continue
        if name.endswith(("encoder_attn.k_proj", "encoder_attn.v_proj")):
            continue
        weight = m.weight.detach().to(dtype)
        if folded_memory and name.endswith(("encoder_attn.q_proj", "encoder_attn.out_proj")):
            heads = model.decoder.layers[0].encoder_attn.num_heads
            weight = torch.randn(heads * folded_memory, weight.shape[1], dtype=dtype)
            weight = weight if name.endswith("q_proj") else weight.T.contiguous()
        weights.append(weight)
    xs = [torch.randn(w.shape[1], dtype=dtype) for w in weights]

    def stream():
        for w, x in zip(weights, xs):
            torch.mv(w, x)

    return stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60, help="TTS decoder steps per utterance")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import SpeechT5Config, SpeechT5ForSpeechToText, SpeechT5ForTextToSpeech
    from transformers.models.speecht5 import modeling_speecht5

    print(f"{machine_line()}; median of {args.repeats}")
    tmp = Path(tempfile.mkdtemp())
    torch.manual_seed(0)
    config = SpeechT5Config()  # SpeechT5-base sizes
    hf_tts = SpeechT5ForTextToSpeech(config).eval()
    hf_tts.save_pretrained(tmp / "tts")
    ours_tts = mmseq.load(tmp / "tts").eval()
    hf_asr = SpeechT5ForSpeechToText(config).eval()
    with torch.no_grad():  # a peaked LM head: greedy paths must not hinge on float noise
        hf_asr.speecht5.decoder.prenet.embed_tokens.weight.mul_(20)
    hf_asr.save_pretrained(tmp / "asr")
    ours_asr = mmseq.load(tmp / "asr").eval()

    print("\n| case | transformers | mmseq | speed-up | unit | check |\n|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(1)
    # --- TTS ------------------------------------------------------------------------------------------------
    # The stop threshold is out of reach, so the maximum-length ratio decides every row's length: batch 1 runs
    # --steps steps; in the batch of 8 the texts differ in length, so the rows' bounds differ (transformers
    # bounds every row by the padded length, mmseq each row by its own; mmseq's rows must equal the first
    # frames of transformers').
    original = modeling_speecht5.SpeechT5SpeechDecoderPrenet._consistent_dropout

    def dropout_off(off: bool) -> None:
        modeling_speecht5.SpeechT5SpeechDecoderPrenet._consistent_dropout = (lambda self, x, p: x) if off else original
        ours_tts.decoder_prenet.dropout = 0.0 if off else 0.5

    for batch in (1, 8):
        text_lens = [_TTS_TEXT_LEN] if batch == 1 else [16 + 6 * i for i in range(batch)]
        ratio = 2.0 * args.steps / _TTS_TEXT_LEN if batch == 1 else 3.0
        ids = torch.full((batch, max(text_lens)), 1, dtype=torch.long)
        for i, n in enumerate(text_lens):
            ids[i, :n] = torch.randint(4, 80, (n,), generator=g)
        lengths = torch.tensor(text_lens)
        spk = torch.randn(batch, 512, generator=g)

        def hf_run(ratio=ratio):
            with torch.no_grad():
                return hf_tts.generate_speech(ids, spk, attention_mask=ids.ne(1).long(), threshold=1e9,
                                              maxlenratio=ratio)

        def ours_run(model=ours_tts, ratio=ratio):
            return mmseq.generate_speech(model, ids, lengths, speaker_embeddings=spk, threshold=1e9,
                                         max_len_ratio=ratio)

        dropout_off(True)
        ref, got = hf_run(), ours_run()
        ref = ref[None] if batch == 1 else ref
        # In the batch, transformers' rows run on past mmseq's ends, and the 5-layer post-net convolution (21
        # frames of context) sees those later frames: compare all but each row's last 10 frames there.
        edge = 0 if batch == 1 else 10
        diff = max((got.mel[i, : n - edge] - ref[i, : n - edge]).abs().max().item()
                   for i, n in enumerate(got.lengths.tolist()))
        dropout_off(False)
        if batch == 1:
            # A call = encoder + steps; the marginal cost of a step, (t(steps) - t(steps / 2)) / (steps / 2),
            # leaves out what a call pays once (encoder, post-net convolution) and is what the bound bounds.
            half = ratio / 2
            lows, rel_l1 = {}, {}
            for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
                low = set_precision(mmseq.load(tmp / "tts").eval(), dtype, torch.device("cpu"))
                dropout_off(True)
                low.decoder_prenet.dropout = 0.0
                fp32_mel = ours_run().mel
                low_mel = ours_run(low).mel.float()
                rel_l1[name] = ((low_mel - fp32_mel).abs().sum() / fp32_mel.abs().sum()).item()
                dropout_off(False)
                low.decoder_prenet.dropout = 0.5
                lows[name] = low
            # every case timed in turn, round by round (bench/timing.py: median_times)
            cases = {"hf": hf_run, "hf half": lambda: hf_run(ratio=half), "fp32": ours_run,
                     "fp32 half": lambda: ours_run(ratio=half)}
            for name, low in lows.items():
                cases[name] = lambda low=low: ours_run(low)
                cases[name + " half"] = lambda low=low: ours_run(low, half)
            t = dict(zip(cases, median_times(list(cases.values()), args.repeats)))
            steps_half = args.steps - args.steps // 2

            def marginal(key: str) -> float:
                return (t[key] - t[key + " half"]) / steps_half

            hf_s, ours_s, hf_step, tts_step_s = t["hf"], t["fp32"], marginal("hf"), marginal("fp32")
            row(f"TTS fp32, batch 1, whole call (encoder + {args.steps} steps)", hf_s, ours_s, args.steps, "step",
                f"max abs diff {diff:.1e}")
            row(f"TTS fp32, batch 1, one decoder step (marginal, steps {args.steps // 2}-{args.steps})", hf_step,
                tts_step_s, 1, "step", "")
            for name in lows:
                row(f"TTS {name} decoder (mmseq) vs fp32 (transformers), batch 1, whole call", hf_s, t[name],
                    args.steps, "step", f"mel rel. L1 vs fp32 {rel_l1[name]:.1e}")
                row(f"TTS {name} decoder (mmseq) vs fp32 (transformers), batch 1, one decoder step (marginal)",
                    hf_step, marginal(name), 1, "step", "")
        else:
            hf_s, ours_s = median_times([hf_run, ours_run], args.repeats)
            frames = int(got.lengths.sum())
            row(f"TTS fp32, batch {batch}, texts of {min(text_lens)}-{max(text_lens)} chars", hf_s, ours_s, frames,
                "output frame", f"rows equal transformers' first frames but the last 10 (max abs {diff:.1e}); transformers "
                f"made {ref.shape[0] * ref.shape[1]} frames, mmseq {frames}")

    # --- ASR -------------------------------------------------------------------------------------------------
    for batch, beams in ((1, 1), (8, 5)):
        seconds = 4.0
        wav = torch.randn(batch, int(16000 * seconds), generator=g) * 0.1
        new_tokens = 30

        def hf_asr_run():
            with torch.no_grad():
                return hf_asr.generate(wav, num_beams=beams, max_new_tokens=new_tokens, do_sample=False,
                                       eos_token_id=_NO_EOS)

        def ours_asr_run():
            return mmseq.generate(ours_asr, wav, num_beams=beams, max_new_tokens=new_tokens, eos_id=_NO_EOS)

        def hf_encoder_run():
            with torch.no_grad():
                return hf_asr.speecht5.encoder(input_values=wav).last_hidden_state

        def ours_encoder_run():
            with torch.no_grad():
                return ours_asr.encode(wav)[0].last_hidden_state

        ref, got = hf_asr_run(), ours_asr_run()
        same = all(r[r.ne(1)].tolist() == o[o.ne(1)].tolist() for r, o in zip(ref, got))
        hf_s, ours_s, hf_enc_s, ours_enc_s = median_times([hf_asr_run, ours_asr_run, hf_encoder_run,
                                                           ours_encoder_run], args.repeats)
        name = "ASR greedy, batch 1" if beams == 1 else f"ASR beam {beams}, batch {batch}"
        # The encoder runs once per call and does the same work on both sides: with mmseq's decoding taking no
        # time at all the speed-up could not exceed hf_s / ours_enc_s.
        generated = got.shape[1] - 1  # the start token leads every row
        row(name + f" ({seconds:.0f} s audio, {generated} new tokens)", hf_s, ours_s, 1, "utterance batch",
            ("same tokens" if same else "tokens differ") + f"; encoder alone {1e3 * hf_enc_s:.0f} / "
            f"{1e3 * ours_enc_s:.0f} ms = {hf_enc_s / ours_enc_s:.2f}x, decoding {1e3 * (hf_s - hf_enc_s):.0f} / "
            f"{1e3 * (ours_s - ours_enc_s):.0f} ms = {(hf_s - hf_enc_s) / (ours_s - ours_enc_s):.2f}x")

    # --- training forward + backward (ASR, teacher-forced, dropout on) -----------------------------------------
    batch, samples, target_len = 4, 16000 * 4, 40
    wav = torch.randn(batch, samples, generator=g) * 0.1
    dec_in = torch.randint(4, 80, (batch, target_len), generator=g)
    hf_asr.train()
    ours_asr.train()

    def hf_train():
        hf_asr(input_values=wav, decoder_input_ids=dec_in).logits.float().mean().backward()

    def ours_train():
        ours_asr(wav, None, dec_in, None).outputs.float().mean().backward()

    hf_s, ours_s = median_times([hf_train, ours_train], args.repeats)
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        ours_train()
    flops = counter.get_total_flops()
    peak = matmul_peak(args.repeats)
    row(f"training fwd+bwd, ASR batch {batch} x 4 s", hf_s, ours_s, 1, "batch",
        f"mmseq {flops / ours_s / 1e9:.0f} GFLOP/s = {flops / ours_s / peak:.0%} of matmul peak "
        f"{peak / 1e9:.0f} GFLOP/s")

    streams = [decoder_step_bound(ours_tts, dtype) for dtype in (torch.float32, torch.bfloat16, torch.float16)]
    bound, bf16_bound, fp16_bound, folded_bound = median_times(
        [*streams, decoder_step_bound(ours_tts, folded_memory=_TTS_TEXT_LEN)], args.repeats)
    print(f"\nTTS batch-1 decoder step (marginal): mmseq {1e3 * tts_step_s:.2f} ms; weight-streaming bound "
          f"{1e3 * bound:.2f} ms (ratio {tts_step_s / bound:.2f}); streaming what mmseq's step reads (the "
          f"cross-attention folded into the {_TTS_TEXT_LEN}-token memory) {1e3 * folded_bound:.2f} ms (ratio "
          f"{tts_step_s / folded_bound:.2f})")
    print(f"The same weights streamed in bf16: {1e3 * bf16_bound:.2f} ms ({bound / bf16_bound:.2f}x fp32's speed), "
          f"in fp16: {1e3 * fp16_bound:.2f} ms ({bound / fp16_bound:.2f}x)")


if __name__ == "__main__":
    main()
