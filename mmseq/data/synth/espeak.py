"""A small ctypes binding to eSpeak NG (through ``espeakng_loader``) that returns audio with phone and word times.

eSpeak NG is a formant synthesiser: robotic, but fully offline and fast (a few milliseconds per sentence), and it
reports *when* each phoneme and word starts. That makes it a good source of a tiny speech corpus with exact
alignments for tests and quick starts.

The library keeps global state (one voice, one callback, the waveform generator), so a process has at most one
:class:`EspeakSynthesizer`, calls it from one thread, and reloads the library for every utterance (see the class);
parallel generation uses processes.

Event timing: phoneme events carry ``sample`` (the sample index at 22050 Hz where the phoneme starts). A phoneme
ends where the next phoneme event starts. Word events arrive in the event list just before the phonemes of their
word (or group of words, see :func:`align_events`); a word spans its first to its last phoneme.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mmseq.data.synth.phones import SILENCE, phone_class
from mmseq.errors import InputError

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_PHONEME_EVENTS = 1
EVENT_LIST_TERMINATED = 0
EVENT_WORD = 1
EVENT_PHONEME = 7
PARAM_RATE = 1
PARAM_VOLUME = 2
PARAM_PITCH = 3
PARAM_RANGE = 4
ESPEAK_RATE = 22050
TARGET_RATE = 16000


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # union: phoneme mnemonic for phoneme events, a number otherwise
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an eSpeak language voice, a variant and prosody settings.

    Attributes:
        name: Speaker id written to manifests, e.g. ``"spk03"``.
        language: eSpeak language voice, e.g. ``"en-us"`` or ``"en-gb-scotland"``.
        variant: Voice variant from ``voices/!v``, e.g. ``"f2"`` or ``"m5"``.
        pitch: Base pitch 0-100.
        rate: Speaking rate in words per minute.
        pitch_range: Pitch range 0-100 (intonation strength).
    """

    name: str
    language: str
    variant: str
    pitch: int
    rate: int
    pitch_range: int = 50

    @property
    def espeak_name(self) -> str:
        return f"{self.language}+{self.variant}"


@dataclass
class Synthesized:
    """Audio and alignment of one utterance.

    Attributes:
        audio: float32 waveform ``[T]`` at 16 kHz.
        phones: ``[{"phone", "start", "end"}]`` covering ``[0, duration]`` contiguously (seconds).
        words: ``[{"word", "start", "end"}]`` for the spoken words (seconds).
        raw_phonemes: eSpeak mnemonics in order (before mapping), for inspection.
    """

    audio: np.ndarray
    phones: list[dict]
    words: list[dict]
    raw_phonemes: list[str]

    @property
    def duration(self) -> float:
        return len(self.audio) / TARGET_RATE


class EspeakSynthesizer:
    """Synthesise text with eSpeak NG and return 16 kHz audio with phone and word times.

    eSpeak's waveform generator keeps state from one utterance to the next (the glottal source's phase and the
    tail of the previous utterance; breathy variants also draw from the C library's ``rand()``), so the same
    text can come out differently depending on what was said before, and neither
    ``espeak_Terminate``/``espeak_Initialize`` nor its random seed resets that. To make
    every utterance depend only on its text and voice, :meth:`synthesize` loads a private copy of the library
    (``dlopen`` of a copied file gives fresh static state), seeds ``rand()``, speaks, and unloads it again
    (about 5 ms).

    Only one instance should exist per process; :func:`get_synthesizer` hands out the shared one.
    """

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - it is a dependency
            raise InputError("speech synthesis needs the 'espeakng-loader' package: pip install espeakng-loader") from e
        self._data = espeakng_loader.get_data_path().encode()
        self._library = _private_copy(espeakng_loader.get_library_path())
        self._lib = None
        self._libc = ctypes.CDLL(None)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: the library calls it later
        self._voice: Voice | None = None
        self._counts: dict[tuple[str, str], int] = {}
        self._open()

    def _open(self) -> None:
        """Load a fresh instance of the library and initialise it (synchronous, with phoneme events)."""
        self._lib = ctypes.CDLL(self._library)
        rate = self._lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data, INITIALIZE_PHONEME_EVENTS)
        if rate != ESPEAK_RATE:
            raise InputError(f"eSpeak NG failed to initialise from {self._data.decode()!r} (returned {rate})")
        self._lib.espeak_SetSynthCallback(self._callback)
        self._voice = None

    def reset(self) -> None:
        """Unload and reload the library, so the next utterance starts from eSpeak's initial state."""
        import _ctypes

        if self._lib is not None:
            self._lib.espeak_Terminate()
            _ctypes.dlclose(self._lib._handle)
        self._open()
        # breathy variants (f2, f3, f5, ...) draw noise from the C library's rand(): seed it too
        self._libc.srand(ctypes.c_uint(0))
        if hasattr(self._lib, "espeak_ng_SetRandSeed"):
            self._lib.espeak_ng_SetRandSeed(ctypes.c_long(0))

    def _on_audio(self, wav, numsamples, events) -> int:
        if numsamples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(numsamples,)).copy())
        i = 0
        while events[i].type != EVENT_LIST_TERMINATED:
            e = events[i]
            if e.type in (EVENT_WORD, EVENT_PHONEME):
                mnemonic = bytes(e.id).split(b"\0")[0].decode("ascii", "replace") if e.type == EVENT_PHONEME else ""
                self._events.append((e.type, e.text_position, e.length, e.sample, mnemonic))
            i += 1
        return 0

    def set_voice(self, voice: Voice) -> None:
        """Select a voice; a no-op when it is already selected."""
        if voice == self._voice:
            return
        if self._lib.espeak_SetVoiceByName(voice.espeak_name.encode()) != 0:
            raise InputError(f"eSpeak NG has no voice {voice.espeak_name!r}")
        self._lib.espeak_SetParameter(PARAM_RATE, int(voice.rate), 0)
        self._lib.espeak_SetParameter(PARAM_PITCH, int(voice.pitch), 0)
        self._lib.espeak_SetParameter(PARAM_RANGE, int(voice.pitch_range), 0)
        self._lib.espeak_SetParameter(PARAM_VOLUME, 100, 0)
        self._voice = voice

    def synthesize_raw(self, text: str) -> tuple[np.ndarray, list[tuple[int, int, int, int, str]]]:
        """Synthesise ``text`` with the current voice.

        Returns:
            int16 audio at 22050 Hz and the word/phoneme events as
            ``(type, text_position, length, sample, mnemonic)``.
        """
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        status = self._lib.espeak_Synth(
            ctypes.c_char_p(data), ctypes.c_size_t(len(data) + 1), 0, 0, 0, 0, None, None
        )
        if status != 0:
            raise InputError(f"eSpeak NG failed to synthesise {text!r} (status {status})")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        return audio, self._events

    def synthesize(self, text: str, voice: Voice, speak: str | None = None) -> Synthesized:
        """Synthesise ``text`` with ``voice`` and align phones and words.

        Args:
            text: The transcript (words separated by single spaces); word labels are taken from it.
            voice: The speaker.
            speak: What to pass to eSpeak instead of ``text`` (e.g. with a final ``?``); must contain the same
                words at the same character offsets.

        Returns:
            The 16 kHz audio with phone classes and word times.
        """
        import torch
        import torchaudio.functional as AF

        self.reset()
        self.set_voice(voice)
        raw, events = self.synthesize_raw(speak if speak is not None else text)
        wave = torch.from_numpy(raw.astype(np.float32) / 32768.0)
        audio = AF.resample(wave, ESPEAK_RATE, TARGET_RATE).numpy().astype(np.float32)
        duration = len(audio) / TARGET_RATE
        phones, words, mnemonics = align_events(events, text, duration, self.phone_count)
        return Synthesized(audio=audio, phones=phones, words=words, raw_phonemes=mnemonics)

    def phone_count(self, word: str) -> int:
        """Number of (non-silence) phones of ``word`` said alone with the current voice's language (cached)."""
        language = self._voice.language if self._voice else ""
        key = (language, word)
        if key not in self._counts:
            chunks, events = self._chunks, self._events  # keep the utterance being aligned
            _, word_events = self.synthesize_raw(word)
            self._chunks, self._events = chunks, events
            classes = [phone_class(e[4]) for e in word_events if e[0] == EVENT_PHONEME]
            self._counts[key] = sum(1 for c in classes if c not in (None, SILENCE))
        return self._counts[key]


def align_events(
    events: list[tuple[int, int, int, int, str]],
    text: str,
    duration: float,
    phone_count: Callable[[str], int] | None = None,
) -> tuple[list[dict], list[dict], list[str]]:
    """Turn eSpeak word/phoneme events into contiguous phone segments and word spans.

    eSpeak does not send a word event for every word: an unstressed function word is spoken as part of its
    neighbour ("on the" arrives as one word event). The phones of such a group are shared among its words in
    proportion to ``phone_count(word)`` (the number of phones of the word said alone).

    Args:
        events: ``(type, text_position, length, sample, mnemonic)`` in arrival order; ``sample`` is at 22050 Hz.
        text: The synthesised text (``text_position`` is a 1-based character offset into it).
        duration: Audio duration in seconds; the last phone ends there.
        phone_count: Phones in one word said alone; ``None`` counts every word as one.

    Returns:
        ``(phones, words, mnemonics)``: phone segments covering ``[0, duration]`` with silence merged,
        word spans in text order, and the raw phoneme mnemonics.
    """
    tokens = [(m.start(), m.group()) for m in re.finditer(r"[^\s]+", text)]
    starts: list[tuple[float, str, int]] = []  # (start seconds, class, group index or -1 for silence)
    group_words: list[list[str]] = []
    mnemonics: list[str] = []
    token_index = 0
    for kind, position, _length, sample, mnemonic in events:
        if kind == EVENT_WORD:
            # every token up to this event's position belongs to the previous group
            words: list[str] = []
            while token_index < len(tokens) and tokens[token_index][0] < position - 1:
                words.append(tokens[token_index][1])
                token_index += 1
            if group_words:
                group_words[-1].extend(words)
            group_words.append([])
            continue
        cls = phone_class(mnemonic)
        if cls is None:  # language switch markers such as "(en)" take no time
            continue
        mnemonics.append(mnemonic)
        starts.append((min(sample / ESPEAK_RATE, duration), cls, len(group_words) - 1 if cls != SILENCE else -1))
    if group_words:
        group_words[-1].extend(t for _, t in tokens[token_index:])

    # Phone i lasts until phone i+1 starts; leading and trailing gaps are silence.
    segments: list[tuple[float, str, int]] = []
    if not starts or starts[0][0] > 0:
        segments.append((0.0, SILENCE, -1))
    segments.extend(starts)
    bounds = [s[0] for s in segments[1:]] + [duration]
    phones: list[dict] = []
    group_phones: dict[int, list[dict]] = {}
    for (start, cls, group), end in zip(segments, bounds):
        if end <= start:
            continue
        if phones and phones[-1]["phone"] == SILENCE and cls == SILENCE:
            phones[-1]["end"] = round(end, 4)
            continue
        phones.append({"phone": cls, "start": round(start, 4), "end": round(end, 4)})
        if group >= 0:
            group_phones.setdefault(group, []).append(phones[-1])
    if phones:
        phones[-1]["end"] = round(duration, 4)

    words_out: list[dict] = []
    for group, words in enumerate(group_words):
        segs = group_phones.get(group, [])
        if not words or not segs:
            continue
        counts = [max(1, phone_count(w)) if phone_count else 1 for w in words]
        # cumulative allocation: word k gets phones [cut[k], cut[k+1]); each word at least one when possible
        total = sum(counts)
        cuts = [round(len(segs) * sum(counts[:k]) / total) for k in range(len(words) + 1)]
        if len(segs) >= len(words):
            for k in range(1, len(cuts)):
                cuts[k] = min(max(cuts[k], cuts[k - 1] + 1), len(segs) - (len(words) - k))
        cuts[-1] = len(segs)
        for k, word in enumerate(words):
            span = segs[cuts[k] : cuts[k + 1]] or segs[min(cuts[k], len(segs) - 1) :][:1]
            words_out.append({"word": word, "start": span[0]["start"], "end": span[-1]["end"]})
    return phones, words_out, mnemonics


def _private_copy(library: str) -> str:
    """A copy of the shared library that nothing else in the process has loaded, so unloading it really unloads.

    The copy lives in the temporary folder under a name derived from the library's content; processes share it.
    """
    with open(library, "rb") as f:
        digest = hashlib.sha1(f.read()).hexdigest()[:16]
    folder = os.path.join(tempfile.gettempdir(), f"mmseq-espeak-{os.getuid() if hasattr(os, 'getuid') else 0}")
    path = os.path.join(folder, f"{digest}-{os.path.basename(library)}")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)
        partial = f"{path}.{os.getpid()}.tmp"
        shutil.copyfile(library, partial)
        os.replace(partial, path)  # atomic: concurrent workers never load a half-written file
    return path


_SYNTHESIZER: EspeakSynthesizer | None = None


def get_synthesizer() -> EspeakSynthesizer:
    """The process-wide synthesiser (created on first use)."""
    global _SYNTHESIZER
    if _SYNTHESIZER is None:
        _SYNTHESIZER = EspeakSynthesizer()
    return _SYNTHESIZER
