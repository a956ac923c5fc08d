import numpy as np
import pytest
import torch

import mmseq
from mmseq.generation import generate
from mmseq.cli import main
from mmseq.data.audio import save_audio
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.errors import ConfigError, InputError
from mmseq.inference.speech import split_text

TEXTS = ["turn on the lights in the kitchen", "the quick brown fox jumps over the lazy dog", "hello world."]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Tiny ASR, TTS, VC and SID checkpoints with a character tokenizer, and a tiny vocoder."""
    root = tmp_path_factory.mktemp("ckpt")
    tokenizer = SpeechT5CharTokenizer.train(TEXTS * 3)
    paths = {}
    for task in ("asr", "tts", "vc", "sid"):
        torch.manual_seed(0)
        overrides = {"vocab_size": len(tokenizer), "max_text_positions": 40} if task in ("asr", "tts") else {}
        if task in ("tts", "vc"):
            overrides["speech_prenet_dropout"] = 0.0  # deterministic, so batched and single runs compare
        model = mmseq.create_model(f"speecht5_{task}_tiny", **overrides)
        if task != "sid":
            model.tokenizer = tokenizer
        if task in ("tts", "vc"):
            with torch.no_grad():
                model.decoder_postnet.prob_out.bias.fill_(-2.0)
        paths[task] = mmseq.save_pretrained(model, root / task)
    paths["vocoder"] = mmseq.save_pretrained(mmseq.create_model("hifigan_tiny"), root / "vocoder")
    return paths


def tone(seconds=0.4, rate=16000, hz=220.0):
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_asr_accepts_paths_arrays_and_batches(checkpoints, tmp_path):
    asr = mmseq.pipeline("asr", checkpoints["asr"], device="cpu")
    path = save_audio(tmp_path / "a.wav", tone(), 16000)
    from_file = asr(str(path), max_new_tokens=5)
    assert isinstance(from_file, str)
    assert asr(tone(), sampling_rate=16000, max_new_tokens=5) == from_file
    resampled = asr(tone(rate=8000), sampling_rate=8000, max_new_tokens=5)
    assert isinstance(resampled, str)
    batch = asr([str(path), tone(0.8)], sampling_rate=16000, max_new_tokens=5, batch_size=2)
    assert batch[0] == from_file and batch[1] == asr(tone(0.8), sampling_rate=16000, max_new_tokens=5)


def test_bad_audio_is_an_input_error(checkpoints):
    asr = mmseq.pipeline("asr", checkpoints["asr"], device="cpu")
    with pytest.raises(InputError, match="pass sampling_rate"):
        asr(tone())
    with pytest.raises(InputError, match="NaN"):
        asr(np.full(8000, np.nan, dtype=np.float32), sampling_rate=16000)
    with pytest.raises(InputError, match="shorter than the model's receptive field"):
        asr(np.zeros(10, dtype=np.float32), sampling_rate=16000)
    with pytest.raises(InputError, match="audio file not found: /nonexistent.wav"):
        asr("/nonexistent.wav")


def test_tts_outputs_audio_and_splits_long_text(checkpoints, tmp_path):
    tts = mmseq.pipeline("tts", checkpoints["tts"], vocoder=checkpoints["vocoder"], device="cpu")
    np.save(tmp_path / "spk.npy", np.ones(8, dtype=np.float32))
    wav, rate = tts("hello world.", speaker_embeddings=tmp_path / "spk.npy", max_len_ratio=4.0)
    assert rate == 16000 and wav.ndim == 1 and wav.size > 0 and wav.size % 16 == 0
    long_text = " ".join(["the quick brown fox jumps."] * 3)  # > 40 positions
    pieces = split_text(long_text, 39)
    assert pieces == ["the quick brown fox jumps."] * 3
    assert split_text("a b. c d. " + "x" * 12 + ", the lazy dog jumps over", 20) == [
        "a b. c d.", "xxxxxxxxxxxx, the", "lazy dog jumps over"]
    long_wav, _ = tts(long_text, max_len_ratio=4.0)
    single = [tts(p, max_len_ratio=4.0)[0] for p in pieces]
    assert long_wav.size == sum(s.size for s in single)


def test_tts_rejects_empty_and_unknown_text(checkpoints):
    tts = mmseq.pipeline("tts", checkpoints["tts"], device="cpu")
    with pytest.raises(InputError, match="non-empty text"):
        tts("   ")
    with pytest.raises(InputError, match="Z"):
        tts("Zebra")
    with pytest.raises(InputError, match=r"speaker embeddings must be \[8\]"):
        tts("hello", speaker_embeddings=np.ones(5))


def test_griffin_lim_fallback_and_bf16(checkpoints):
    tts = mmseq.pipeline("tts", checkpoints["tts"], device="cpu", dtype="bf16")
    wav, rate = tts("hello world.", max_len_ratio=2.0)
    assert wav.dtype == np.float32 and np.isfinite(wav).all()


def test_vc_and_sid(checkpoints):
    vc = mmseq.pipeline("vc", checkpoints["vc"], vocoder=checkpoints["vocoder"], device="cpu")
    wav, rate = vc(tone(), sampling_rate=16000, speaker_embeddings=np.ones(8), max_len_ratio=1.0)
    assert rate == 16000 and wav.size > 0
    sid = mmseq.pipeline("sid", checkpoints["sid"], device="cpu")
    out = sid([tone(), tone(hz=440)], sampling_rate=16000)
    assert len(out) == 2 and all(0 <= o["score"] <= 1 and o["label"] in {str(i) for i in range(5)} for o in out)


def test_unknown_task_and_dtype():
    with pytest.raises(ConfigError, match="unknown task 'asrr'.*Did you mean 'asr'"):
        mmseq.pipeline("asrr", model=None)
    with pytest.raises(ConfigError, match="unknown dtype 'fp8'"):
        mmseq.pipeline("asr", model=None, dtype="fp8")


def test_infer_cli_writes_wavs_and_prints_text(checkpoints, tmp_path, capsys):
    path = save_audio(tmp_path / "in.wav", tone(), 16000)
    assert main(["infer", "asr", "--model", str(checkpoints["asr"]), str(path), "--max-new-tokens", "4"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}\t")
    out_dir = tmp_path / "out"
    assert main(["infer", "tts", "--model", str(checkpoints["tts"]), "--vocoder", str(checkpoints["vocoder"]),
                 "--out", str(out_dir), "hello world.", "--max-len-ratio", "2"]) == 0
    assert (out_dir / "0000.wav").is_file()


def test_silent_and_integer_audio(checkpoints):
    asr = mmseq.pipeline("asr", checkpoints["asr"], device="cpu")
    # Silence is valid input: a (possibly empty) transcript comes back, and generation stops at its bound.
    assert isinstance(asr(np.zeros(8000, dtype=np.float32), sampling_rate=16000, max_new_tokens=5), str)
    pcm = (tone() * 32767).astype(np.int16)
    text = asr(pcm, sampling_rate=16000, max_new_tokens=5)
    assert isinstance(text, str)
    model = mmseq.load(checkpoints["asr"])
    with pytest.raises(InputError, match="float tensor"):
        generate(model, torch.zeros(1, 8000, dtype=torch.int16))


def test_per_input_speaker_embeddings_follow_their_inputs_across_batches(checkpoints):
    vc = mmseq.pipeline("vc", checkpoints["vc"], vocoder=checkpoints["vocoder"], device="cpu")
    spk = np.stack([np.ones(8), -np.ones(8), np.arange(8.0)]).astype(np.float32)
    inputs = [tone(), tone(hz=300), tone(hz=500)]
    batched = vc(inputs, sampling_rate=16000, speaker_embeddings=spk, batch_size=2, max_len_ratio=1.0)
    for i in range(3):
        alone, _ = vc(inputs[i], sampling_rate=16000, speaker_embeddings=spk[i], max_len_ratio=1.0)
        np.testing.assert_allclose(batched[i][0], alone, atol=1e-4)
    tts = mmseq.pipeline("tts", checkpoints["tts"], vocoder=checkpoints["vocoder"], device="cpu")
    texts = ["hello world.", "turn on the lights."]
    both = tts(texts, speaker_embeddings=spk[:2], batch_size=1, max_len_ratio=2.0)
    for i in range(2):
        alone, _ = tts(texts[i], speaker_embeddings=spk[i], max_len_ratio=2.0)
        np.testing.assert_allclose(both[i][0], alone, atol=1e-4)


@pytest.mark.parametrize("task, model, reads, writes", [
    ("asr", "tts", "text", "mel"), ("tts", "asr", "waveform", "text"), ("vc", "asr", "waveform", "text"),
    ("sid", "vc", "waveform", "mel"), ("asr", "sid", "waveform", "classes"),
])
def test_a_pipeline_whose_task_does_not_fit_the_model_says_so_when_built(checkpoints, task, model, reads, writes):
    with pytest.raises(ConfigError, match=f"pipeline '{task}' needs a model that reads .* model '.*{model}' "
                                          f"\\(speecht5_{model}_tiny\\) reads {reads} and writes {writes}"):
        mmseq.pipeline(task, checkpoints[model], device="cpu")


def test_asr_transcribes_what_the_model_decodes(checkpoints):
    # The pipeline's text is the tokenizer's decoding of generate()'s ids, batched or not.
    asr = mmseq.pipeline("asr", checkpoints["asr"], device="cpu")
    model = asr.model
    wav = torch.from_numpy(tone())[None]
    ids = generate(model, wav, torch.tensor([wav.shape[1]]), max_new_tokens=6)
    expected = model.tokenizer.decode(ids[0])
    assert asr(tone(), sampling_rate=16000, max_new_tokens=6) == expected
    assert asr([tone(), tone()], sampling_rate=16000, max_new_tokens=6) == [expected, expected]
