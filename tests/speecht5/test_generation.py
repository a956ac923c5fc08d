"""Generation: equal to transformers on the same weights, incremental == full recomputation, batched ==
one by one, always terminating."""

import pytest
import torch

import mmseq
from mmseq.generation import generate, generate_speech

from speecht5_helpers import hf_config, randomize_batchnorm, transformers


def strip(row, eos=2, pad=1):
    out = []
    for t in row.tolist()[1:]:
        if t == pad:
            break
        out.append(t)
        if t == eos:
            break
    return out


@pytest.fixture(scope="module")
def asr_pair(tmp_path_factory):
    path = tmp_path_factory.mktemp("asr")
    torch.manual_seed(0)
    hf = transformers.SpeechT5ForSpeechToText(hf_config()).eval()
    # A sharper LM head so that greedy paths are not decided by float noise between near-equal logits.
    with torch.no_grad():
        hf.speecht5.decoder.prenet.embed_tokens.weight.mul_(8)
    hf.save_pretrained(path)
    return hf, mmseq.load(path).eval()


def waves(n=3, samples=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([samples, samples - 600, samples - 1300][:n])
    wav = torch.randn(n, samples, generator=g) * 0.3
    wav[torch.arange(samples)[None, :] >= lengths[:, None]] = 0
    return wav, lengths


def test_greedy_asr_tokens_equal_transformers(asr_pair):
    hf, ours = asr_pair
    wav, lengths = waves()
    for i in range(3):  # batch of one: transformers pads nothing
        w = wav[i : i + 1, : lengths[i]]
        ref = hf.generate(w, max_new_tokens=30, num_beams=1, do_sample=False)
        got = generate(ours, w, max_new_tokens=30)
        assert strip(got[0]) == strip(ref[0])


def test_batched_greedy_equals_one_by_one_and_full_recomputation(asr_pair):
    _, ours = asr_pair
    wav, lengths = waves()
    batched = generate(ours, wav, lengths, max_new_tokens=30)
    for i in range(3):
        alone = generate(ours, wav[i : i + 1], lengths[i : i + 1], max_new_tokens=30)
        assert strip(batched[i]) == strip(alone[0])
        # Without the cache: teacher-force the generated prefix; argmax must reproduce every next token.
        tokens = torch.tensor([[2] + strip(alone[0])])
        with torch.no_grad():
            logits = ours(wav[i : i + 1], lengths[i : i + 1], tokens[:, :-1], None).outputs
        assert logits.argmax(-1)[0].tolist() == tokens[0, 1:].tolist()


def test_beam_search_is_batch_invariant(asr_pair):
    _, ours = asr_pair
    wav, lengths = waves()
    batched = generate(ours, wav, lengths, num_beams=4, max_new_tokens=20)
    for i in range(3):
        alone = generate(ours, wav[i : i + 1], lengths[i : i + 1], num_beams=4, max_new_tokens=20)
        assert strip(batched[i]) == strip(alone[0])


def test_a_wide_enough_beam_finds_the_best_hypothesis_of_an_exhaustive_search():
    # Vocabulary of 6, at most 3 new tokens: 31 complete hypotheses. 30 beams keep every live prefix, so beam
    # search must return the hypothesis with the best length-normalised log-probability (teacher-forced).
    import itertools

    torch.manual_seed(0)
    model = mmseq.create_model("text_transformer_tiny", vocab_size=6, dropout=0.0).eval()
    with torch.no_grad():  # sharper distributions, so the optimum is not a near-tie
        model.decoder_prenet.embed_tokens.weight.mul_(6)
    src, src_lengths = torch.tensor([[3, 4, 5, 3], [5, 4, 1, 1]]), torch.tensor([4, 2])
    got = generate(model, src, src_lengths, num_beams=30, max_new_tokens=3, start_id=0, eos_id=2, pad_id=1)
    for row in range(2):
        best, best_score = None, float("-inf")
        for n in range(3):
            for body in itertools.product(range(6), repeat=n):
                if 2 in body:
                    continue
                hyp = [0, *body, 2]
                tokens = torch.tensor([hyp])
                with torch.no_grad():
                    logits = model(src[row : row + 1], src_lengths[row : row + 1], tokens[:, :-1], None).outputs
                score = logits.log_softmax(-1).gather(-1, tokens[:, 1:, None]).sum().item() / (len(hyp) - 1)
                if score > best_score:
                    best, best_score = hyp, score
        assert got[row][: len(best)].tolist() == best and bool((got[row][len(best):] == 1).all())


@pytest.fixture(scope="module")
def tts_pair(tmp_path_factory):
    path = tmp_path_factory.mktemp("tts")
    torch.manual_seed(0)
    hf = transformers.SpeechT5ForTextToSpeech(hf_config()).eval()
    randomize_batchnorm(hf)
    with torch.no_grad():  # make stop probabilities rise within a few dozen steps
        hf.speech_decoder_postnet.prob_out.bias.fill_(-3.0)
    hf.save_pretrained(path)
    return hf, mmseq.load(path, speech_prenet_dropout=0.0).eval()


def test_tts_spectrograms_equal_transformers(tts_pair, no_hf_prenet_dropout):
    hf, ours = tts_pair
    g = torch.Generator().manual_seed(5)
    for n in (4, 7, 11):
        ids = torch.randint(4, 40, (1, n), generator=g)
        spk = torch.randn(1, 8, generator=g)
        ref = hf.generate_speech(ids, spk, threshold=0.5, maxlenratio=20.0)
        got = generate_speech(ours, ids, speaker_embeddings=spk, threshold=0.5, max_len_ratio=20.0)
        assert got.mel.shape[1:] == ref.shape and got.lengths.tolist() == [ref.shape[0]]
        assert (got.mel[0] - ref).abs().max() < 1e-4


def test_vc_spectrograms_equal_transformers(tmp_path, no_hf_prenet_dropout):
    torch.manual_seed(0)
    hf = transformers.SpeechT5ForSpeechToSpeech(hf_config()).eval()
    randomize_batchnorm(hf)
    hf.save_pretrained(tmp_path)
    ours = mmseq.load(tmp_path, speech_prenet_dropout=0.0).eval()
    wav, _ = waves(1)
    spk = torch.randn(1, 8)
    ref = hf.generate_speech(wav, spk, maxlenratio=2.0)
    got = generate_speech(ours, wav, speaker_embeddings=spk, max_len_ratio=2.0)
    assert got.mel.shape[1:] == ref.shape and (got.mel[0] - ref).abs().max() < 1e-4


def test_batched_tts_equals_one_by_one_with_per_row_lengths(tts_pair):
    _, ours = tts_pair
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 2], [12, 13, 14, 2, 1, 1, 1, 1], [15, 16, 17, 18, 19, 2, 1, 1]])
    lengths = ids.ne(1).sum(1)
    spk = torch.randn(3, 8)
    batched = generate_speech(ours, ids, lengths, speaker_embeddings=spk, stop_rule="any")
    for i in range(3):
        alone = generate_speech(ours, ids[i : i + 1, : lengths[i]], speaker_embeddings=spk[i : i + 1],
                                     stop_rule="any")
        n = int(alone.lengths[0])
        assert int(batched.lengths[i]) == n
        torch.testing.assert_close(batched.mel[i, :n], alone.mel[0], atol=1e-5, rtol=1e-5)
        assert (batched.mel[i, n:] == 0).all()


def test_prenet_dropout_is_seedable_and_switchable(tts_pair):
    _, ours = tts_pair
    ids = torch.tensor([[5, 6, 7, 2]])
    ours.decoder_prenet.dropout = 0.5
    try:
        a = generate_speech(ours, ids, generator=torch.Generator().manual_seed(1), max_len_ratio=4)
        b = generate_speech(ours, ids, generator=torch.Generator().manual_seed(1), max_len_ratio=4)
        c = generate_speech(ours, ids, generator=torch.Generator().manual_seed(2), max_len_ratio=4)
        assert torch.equal(a.mel, b.mel) and not torch.equal(a.mel, c.mel)
    finally:
        ours.decoder_prenet.dropout = 0.0


def test_generation_terminates_at_the_length_bound(tts_pair):
    _, ours = tts_pair
    out = generate_speech(ours, torch.tensor([[5, 6, 7, 2]]), threshold=10.0, max_len_ratio=3.0)  # never stops
    assert out.lengths.tolist() == [int(4 * 3.0 / 2) * 2]


def test_generation_returns_ordinary_tensors_and_leaves_the_model_trainable(tts_pair, asr_pair):
    # Generation runs under torch.inference_mode; what it returns, and a position table it grew on the way,
    # must still work with autograd afterwards.
    import copy

    tts = copy.deepcopy(tts_pair[1])
    positions = tts.decoder_prenet.encode_positions
    positions.pe = positions.pe[:3].clone()  # generating past 3 frames grows the table
    out = generate_speech(tts, torch.tensor([[5, 6, 7, 2]]), threshold=10.0, max_len_ratio=3.0)
    steps = out.mel.shape[1] // tts.decoder_postnet.reduction_factor
    assert steps == 6 and positions.pe.shape[0] >= steps
    assert not out.mel.is_inference() and not out.lengths.is_inference() and not positions.pe.is_inference()
    scale = torch.ones((), requires_grad=True)
    (out.mel * scale).sum().backward()  # autograd saves the mel: refused for an inference tensor
    out.mel.add_(1)  # in place: refused for an inference tensor outside inference mode
    tts.train()
    frames = torch.randn(1, steps, tts.decoder_prenet.num_mel_bins)
    result = tts(torch.tensor([[5, 6, 7, 2]]), None, frames, None, speaker_embeddings=torch.randn(1, 8))
    result.outputs.mel_after.sum().backward()
    assert positions.alpha.grad is not None

    tokens = generate(asr_pair[1], waves(1)[0], max_new_tokens=5)
    assert not tokens.is_inference()
    with torch.inference_mode():  # inside the caller's own inference mode nothing is copied out
        assert generate(asr_pair[1], waves(1)[0], max_new_tokens=5).is_inference()


@pytest.mark.parametrize("batch, steps", [(1, 1), (3, 4)])
def test_prenet_speaker_conditioning_equals_the_concatenated_speaker_layer(tts_pair, batch, steps):
    # Generation splits the speaker layer once per call (W_x and a per-row speaker term); same outputs.
    _, ours = tts_pair
    prenet = ours.decoder_prenet
    frames, spk = torch.randn(batch, steps, prenet.num_mel_bins), torch.randn(batch, 8)
    with torch.no_grad():
        full, _ = prenet(frames, None, offset=3, speaker_embeddings=spk)
        split, _ = prenet(frames, None, offset=3, speaker_conditioning=prenet.speaker_conditioning(spk))
    torch.testing.assert_close(split, full, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("batch", [1, 3])
def test_prenet_one_step_path_equals_the_module_path_with_the_same_dropout_masks(tts_pair, batch):
    # Generation calls the pre-net's step() (one frame per row, no module calls) for a plain pre-net; its forward
    # is the module path. Same seed, same masks, same output.
    _, ours = tts_pair
    prenet = ours.decoder_prenet
    frames, spk = torch.randn(batch, 1, prenet.num_mel_bins), torch.randn(batch, 8)
    with torch.no_grad():
        conditioning = prenet.speaker_conditioning(spk)
    outputs = {}
    prenet.dropout = 0.5
    try:
        for name, seed in (("fast", 3), ("module", 3), ("other seed", 4)):
            prenet.generator = torch.Generator().manual_seed(seed)
            with torch.no_grad():
                if name == "module":
                    outputs[name] = prenet(frames, None, offset=7, speaker_embeddings=spk)[0]
                else:
                    outputs[name] = prenet.step(frames[:, 0], 7, conditioning)
    finally:
        prenet.dropout, prenet.generator = 0.0, None
    assert outputs["fast"].shape == (batch, 1, prenet.output_dim)
    torch.testing.assert_close(outputs["fast"], outputs["module"], atol=1e-6, rtol=1e-5)
    assert not torch.allclose(outputs["fast"], outputs["other seed"])


def test_speech_generation_with_a_hooked_prenet_and_heads_takes_the_module_paths(tts_pair):
    # A forward hook on the pre-net's layer and on a post-net head changes what they compute; generation must see
    # it (the fast paths read their weights directly and are skipped), and fast=False gives the reference.
    import copy

    tts = copy.deepcopy(tts_pair[1])
    ids, spk = torch.tensor([[5, 6, 7, 8, 2]]), torch.randn(1, 8)
    plain_fast = generate_speech(tts, ids, speaker_embeddings=spk, threshold=10.0, max_len_ratio=2.0)
    plain_ref = generate_speech(tts, ids, speaker_embeddings=spk, threshold=10.0, max_len_ratio=2.0, fast=False)
    torch.testing.assert_close(plain_fast.mel, plain_ref.mel, atol=1e-5, rtol=1e-5)
    tts.decoder_prenet.layers[0].register_forward_hook(lambda module, args, out: out * 0.5)
    tts.decoder_postnet.feat_out.register_forward_hook(lambda module, args, out: out + 1.0)
    hooked = generate_speech(tts, ids, speaker_embeddings=spk, threshold=10.0, max_len_ratio=2.0)
    reference = generate_speech(tts, ids, speaker_embeddings=spk, threshold=10.0, max_len_ratio=2.0, fast=False)
    torch.testing.assert_close(hooked.mel, reference.mel, atol=1e-5, rtol=1e-5)
    assert (hooked.mel - plain_fast.mel).abs().max() > 0.1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_on_cpu_casts_only_the_decoder_and_stays_close(monkeypatch, dtype):
    """set_precision on a CPU: pre-/post-nets and encoder stay fp32, the decoder is cast; generation (fused
    path, with the size threshold lowered so the tiny model's products really run in reduced precision) and
    teacher forcing (module path, fp32 pre-net output into the reduced decoder) stay close to fp32."""
    from mmseq.inference import set_precision
    from mmseq.nn import incremental

    monkeypatch.setattr(incremental, "_REDUCED_MIN_ELEMENTS", 0)
    torch.manual_seed(0)
    ref = mmseq.create_model("speecht5_tts_tiny", speech_prenet_dropout=0.0).eval()
    low = mmseq.create_model("speecht5_tts_tiny", speech_prenet_dropout=0.0).eval()
    low.load_state_dict(ref.state_dict())
    low = set_precision(low, dtype, torch.device("cpu"))
    assert low.decoder.layers[0].feed_forward.intermediate_dense.weight.dtype == dtype
    assert low.decoder_prenet.final_layer.weight.dtype == torch.float32
    assert low.decoder_postnet.feat_out.weight.dtype == torch.float32
    ids, lengths = torch.tensor([[5, 6, 7, 8, 9, 2]]), torch.tensor([6])
    spk = torch.randn(1, 8)
    a = generate_speech(ref, ids, lengths, speaker_embeddings=spk, threshold=1e9, max_len_ratio=4.0)
    b = generate_speech(low, ids, lengths, speaker_embeddings=spk, threshold=1e9, max_len_ratio=4.0)
    assert b.mel.dtype == torch.float32 and b.lengths.tolist() == a.lengths.tolist()
    assert ((b.mel - a.mel).abs().sum() / a.mel.abs().sum()).item() < 2e-2
    # a batch (several rows through the one-step path) with a row leaving early
    batch_ids = torch.tensor([[5, 6, 7, 8, 9, 2], [10, 11, 12, 2, 1, 1]])
    batch_lengths, batch_spk = torch.tensor([6, 4]), torch.randn(2, 8)
    a2 = generate_speech(ref, batch_ids, batch_lengths, speaker_embeddings=batch_spk, threshold=1e9, max_len_ratio=4.0)
    b2 = generate_speech(low, batch_ids, batch_lengths, speaker_embeddings=batch_spk, threshold=1e9, max_len_ratio=4.0)
    assert b2.lengths.tolist() == a2.lengths.tolist() == [24, 16]  # the second row leaves the batch first
    assert ((b2.mel - a2.mel).abs().sum() / a2.mel.abs().sum()).item() < 2e-2
    frames = torch.randn(1, 5, ref.decoder_postnet.num_mel_bins)
    with torch.no_grad():
        full = ref(ids, lengths, frames, None, speaker_embeddings=spk).outputs.mel_after
        reduced = low(ids, lengths, frames, None, speaker_embeddings=spk).outputs.mel_after
    assert reduced.dtype == torch.float32
    assert ((reduced - full).abs().sum() / full.abs().sum()).item() < 2e-2
