"""ASR word error rates of the speech-output tasks' generated speech (``task_args.asr_model``): parity with
``mmseq.pipeline("asr", ...)`` run directly on the same generated and recorded audio, an ASR model that transcribes
the recordings it was trained on exactly, the keys only when the option is set, and the bad-path errors at task build
time."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

import mmseq
from mmseq.config import from_dict
from mmseq.data.audio import load_audio, resample
from mmseq.data.tokenizers import SpeechT5CharTokenizer
from mmseq.errors import ConfigError
from mmseq.metrics import character_error_rate, word_error_rate
from mmseq.tasks import build_task, task_config
from mmseq.tasks.speecht5.asr_score import AsrScorer
from mmseq.tasks.speecht5.data import SpeechItem
from mmseq.tasks.speecht5.text import collate_text, speech_to_text_loss
from mmseq.train.loop import load_run_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "speecht5"))
from speecht5_helpers import make_speech_output_corpus  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "speecht5"
SMALL = dict(num_mel_bins=16, speaker_embedding_dim=8)
# A 320x waveform pre-net (the tiny builder's 20x makes attention over the audio slow).
FAST_CONV = dict(conv_dims=(32, 32, 32, 32), conv_kernels=(10, 8, 4, 4), conv_strides=(5, 4, 4, 4))
ASR_KEYS = {"asr_wer", "asr_cer", "asr_wer_recorded", "asr_cer_recorded"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_speech_output_corpus(tmp_path_factory.mktemp("asr_score_corpus"))


@pytest.fixture(scope="module")
def asr_checkpoint(corpus, tmp_path_factory) -> Path:
    """A tiny ASR (CTC head) fitted to the six training recordings in 150 full-batch steps (3 s): it transcribes
    them exactly, and other audio with errors."""
    rows = [json.loads(line) for line in (corpus / "train.jsonl").read_text().splitlines()]
    tokenizer = SpeechT5CharTokenizer.train([r["text"] for r in rows] + ["a b c d"])
    torch.manual_seed(0)
    model = mmseq.create_model("speecht5_asr_tiny", vocab_size=len(tokenizer), ctc=True, mask_time_prob=0.0,
                               **FAST_CONV)
    items = [SpeechItem(load_audio(corpus / r["audio"]), tokenizer.encode(r["text"]), i) for i, r in enumerate(rows)]
    batch = collate_text(items, tokenizer.pad_id, tokenizer.eos_id)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss, _ = speech_to_text_loss(model, batch, blank_id=tokenizer.ctc_blank_id)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.tokenizer = tokenizer
    return mmseq.save_pretrained(model.eval(), tmp_path_factory.mktemp("asr") / "best")


def lines(corpus: Path, manifest: str) -> list[dict]:
    return [json.loads(line) for line in (corpus / manifest).read_text().splitlines()]


def write_lines(corpus: Path, manifest: str, rows: list[dict]) -> str:
    """A manifest beside ``manifest``'s folder (so its relative audio paths hold); its name under the corpus."""
    (corpus / manifest).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def task_and_model(kind: str, corpus: Path, **task_args):
    args = {"corpus": str(corpus), "speaker_embedding": "speaker_random", "eval_utterances": 4, "max_len_ratio": 4.0,
            **SMALL, **task_args}
    task = build_task(f"speecht5_{kind}", args)
    torch.manual_seed(0)
    extra = {"vocab_size": task.info["vocab_size"]} if kind == "tts" else FAST_CONV
    model = mmseq.create_model(f"speecht5_{kind}_tiny", **SMALL, **extra).eval()
    if task.prepare_model is not None:
        task.prepare_model(model)
    return task, model


@pytest.mark.parametrize("kind", ["tts", "vc", "se"])
def test_asr_error_rates_equal_the_asr_pipeline_on_the_same_audio(kind, corpus, asr_checkpoint):
    # Beam search without CTC, which the pipeline also runs; the pipeline's bound on new tokens set to the one the
    # ASR task's decoding uses (one per encoder frame of the batch's longest input + 10). Validation: two training
    # lines (recordings the ASR transcribes exactly) and two new voices' (which it mishears).
    sub = "" if kind == "tts" else f"{kind}/"
    mixed = write_lines(corpus, f"{sub}mixed.jsonl", lines(corpus, f"{sub}train.jsonl")[:2]
                        + lines(corpus, f"{sub}dev.jsonl")[:2])
    task, model = task_and_model(kind, corpus, asr_model=str(asr_checkpoint), asr_num_beams=3, asr_ctc_weight=0.0,
                                 val_manifest=mixed)
    torch.manual_seed(1)  # Griffin-Lim starts from random phases
    scores = task.evaluate(model, "val")
    evaluation, dataset = task.evaluate, task.val_set
    n = 4
    torch.manual_seed(1)
    _, lengths, wavs = evaluation.synthesise(model, [dataset[i] for i in range(n)])
    generated = [wavs[i, : int(lengths[i]) * evaluation.vocoder.samples_per_frame] for i in range(n)]
    utts = dataset.utterances[:n]
    refs = [u.text for u in utts]
    asr = mmseq.pipeline("asr", model=asr_checkpoint, device="cpu")
    rate = asr.model.downsample_rate

    def direct(audio, **kwargs):
        longest = max(len(a) if not isinstance(a, str) else len(load_audio(a)) for a in audio)
        return asr(audio, num_beams=3, max_new_tokens=longest // rate + 10, **kwargs)

    recorded = direct([u.audio if kind == "tts" else u.target_audio for u in utts])
    assert 0 < word_error_rate(recorded, refs).rate < 1, recorded  # a parity of neither perfect nor empty output
    assert scores["asr_wer_recorded"] == pytest.approx(word_error_rate(recorded, refs).rate)
    assert scores["asr_cer_recorded"] == pytest.approx(character_error_rate(recorded, refs).rate)
    heard = direct([w.numpy() for w in generated], sampling_rate=16000)
    assert scores["asr_wer"] == pytest.approx(word_error_rate(heard, refs).rate)
    assert scores["asr_cer"] == pytest.approx(character_error_rate(heard, refs).rate)
    assert scores["asr_wer_ratio"] == pytest.approx(scores["asr_wer"] / scores["asr_wer_recorded"])
    if kind == "se":
        noisy = direct([u.audio for u in utts])
        assert scores["asr_wer_noisy"] == pytest.approx(word_error_rate(noisy, refs).rate)
    # The recordings' transcripts are kept: a second evaluation decodes only the generated speech.
    kept = len(evaluation.asr._recorded)
    assert kept == (2 if kind == "se" else 1)
    assert task.evaluate(model, "val")["asr_wer_recorded"] == scores["asr_wer_recorded"]
    assert len(evaluation.asr._recorded) == kept


@pytest.mark.parametrize("kind", ["tts", "vc", "se"])
def test_recordings_the_asr_knows_score_zero_and_leave_the_ratio_undefined(kind, corpus, asr_checkpoint):
    # Validation on the training lines: the TTS recordings, the VC targets (the other voice's reading) and the SE
    # clean speech are what the ASR model was fitted to. VC's and SE's sources are moved one line on (another
    # sentence), so the scores show which audio was transcribed: a source in place of the recording would not
    # score 0, and SE's noisy input (here another sentence) must score above 0.
    sub = "" if kind == "tts" else f"{kind}/"
    rows = lines(corpus, f"{sub}train.jsonl")
    if kind != "tts":
        rows = [{**r, "audio": rows[(i + 1) % len(rows)]["audio"]} for i, r in enumerate(rows)]
    manifest = write_lines(corpus, f"{sub}known.jsonl", rows)
    task, model = task_and_model(kind, corpus, asr_model=str(asr_checkpoint), val_manifest=manifest)
    scores = task.evaluate(model, "val")
    assert ASR_KEYS <= set(scores), scores
    assert scores["asr_wer_recorded"] == 0.0 and scores["asr_cer_recorded"] == 0.0
    assert "asr_wer_ratio" not in scores
    assert scores["asr_wer"] > 0  # an untrained model's speech is not the recordings
    assert ("asr_wer_noisy" in scores and "asr_cer_noisy" in scores) == (kind == "se")
    if kind == "se":
        assert scores["asr_wer_noisy"] > 0


def test_no_asr_keys_without_asr_model(corpus):
    task, model = task_and_model("vc", corpus)
    scores = task.evaluate(model, "val")
    assert "mcd_undefined" in scores and not any(k.startswith("asr_") for k in scores), scores


def test_scorer_resamples_and_hears_nothing_in_too_short_audio(corpus, asr_checkpoint):
    scorer = AsrScorer(str(asr_checkpoint), num_beams=1)
    wav = load_audio(corpus / "wav" / "s1_0.wav")
    low = resample(wav, 16000, 8000)
    at_8k = scorer.transcribe([low, torch.zeros(100)], 8000)
    assert at_8k == [scorer.transcribe([resample(low, 8000, 16000)], 16000)[0], ""]
    assert at_8k[0]


def test_bad_asr_model_is_an_error_at_task_build_time(corpus, asr_checkpoint, tmp_path):
    args = {"corpus": str(corpus), "speaker_embedding": "speaker_random", **SMALL}
    with pytest.raises(ConfigError, match=r"task_args\.asr_model: '.*nowhere' does not exist"):
        build_task("speecht5_tts", {**args, "asr_model": str(tmp_path / "nowhere")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"task_args\.asr_model: cannot load"):
        build_task("speecht5_tts", {**args, "asr_model": str(tmp_path / "empty")})
    tts = mmseq.save_pretrained(mmseq.create_model("speecht5_tts_tiny", vocab_size=34, **SMALL), tmp_path / "tts")
    with pytest.raises(ConfigError, match=r"task_args\.asr_model: .*\(speecht5_tts_tiny\) is not an ASR model: it "
                                          r"reads text and writes mel"):
        build_task("speecht5_vc", {**args, "asr_model": str(tts)})
    no_tokenizer = mmseq.save_pretrained(mmseq.create_model("speecht5_asr_tiny", vocab_size=34), tmp_path / "asr")
    with pytest.raises(ConfigError, match=r"task_args\.asr_model: .* has no tokenizer"):
        build_task("speecht5_se", {**args, "asr_model": str(no_tokenizer)})
    with pytest.raises(ConfigError, match=r"task_args\.asr_num_beams"):
        build_task("speecht5_tts", {**args, "asr_model": str(asr_checkpoint), "asr_num_beams": 0})


@pytest.mark.parametrize("kind", ["tts", "vc"])
def test_quick_configs_name_the_option(kind):
    cfg = load_run_config(RECIPES / kind / "configs" / "quick.yaml")
    assert "asr_model" in cfg.task_args and cfg.task_args["asr_model"] is None
    assert from_dict(task_config(cfg.task), dict(cfg.task_args), where="task_args").asr_model is None
