"""Text tokenizers: SpeechT5's character vocabulary, sentencepiece BPE, and English number normalisation.

:class:`SpeechT5CharTokenizer` reproduces the ids of ``transformers.SpeechT5Tokenizer`` on the same
``spm_char.model``: sentencepiece pieces first (``<s>``=0, ``<pad>``=1, ``</s>``=2, ``<unk>``=3, then ``▁`` and the
characters), ``<mask>`` and ``<ctc_blank>`` appended after them (79 and 80 for the released 79-piece model, vocab 81),
and ``</s>`` appended to every encoded text. :class:`BPETokenizer` is a plain sentencepiece BPE model with the same
special ids, for SLU and translation targets.

Both tokenizers share ``encode`` / ``decode`` / ``batch_encode`` and the ``pad_id`` / ``bos_id`` / ``eos_id`` /
``unk_id`` / ``vocab_size`` attributes, which is all the collate functions and models use.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch

from mmseq.atomic import atomic_write_bytes
from mmseq.errors import InputError

__all__ = [
    "SpeechT5CharTokenizer", "BPETokenizer", "normalize_numbers", "number_to_words", "ordinal_to_words",
    "year_to_words", "pad_id_lists",
]

# sentencepiece special ids shared by both tokenizers (SpeechT5's spm_char.model layout).
BOS_ID, PAD_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
_SPECIAL_PIECES = {"bos_piece": "<s>", "pad_piece": "<pad>", "eos_piece": "</s>", "unk_piece": "<unk>"}


def pad_id_lists(sequences: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into one tensor.

    Args:
        sequences: ``B`` lists of token ids.
        pad_id: Id written after each sequence's end.

    Returns:
        ``(ids [B, max_len], lengths [B])``, both long.
    """
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    ids = torch.full((len(sequences), int(lengths.max()) if len(sequences) else 0), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return ids, lengths


def _train_sentencepiece(texts: Iterable[str], model_type: str, vocab_size: int, **options: object) -> bytes:
    """Train a sentencepiece model in memory with SpeechT5's special ids; returns the serialized model."""
    texts = [t for t in texts if t and t.strip()]
    if not texts:
        raise InputError("cannot train a tokenizer: no non-empty text was given")
    buffer = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=buffer, model_type=model_type, vocab_size=vocab_size,
            bos_id=BOS_ID, pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, **_SPECIAL_PIECES,
            hard_vocab_limit=False, minloglevel=2, **options)
    except RuntimeError as e:
        raise InputError(f"sentencepiece training failed ({model_type}, vocab_size={vocab_size}): {e}") from None
    return buffer.getvalue()


def _load_processor(model: Path | bytes, what: str) -> spm.SentencePieceProcessor:
    """Load a sentencepiece model from a file or bytes, turning failures into :class:`InputError`."""
    if isinstance(model, Path) and not model.is_file():
        raise InputError(f"{what} not found: {model}")
    try:
        if isinstance(model, Path):
            return spm.SentencePieceProcessor(model_file=str(model))
        return spm.SentencePieceProcessor(model_proto=model)
    except (RuntimeError, OSError) as e:
        raise InputError(f"cannot load {what} {model if isinstance(model, Path) else '(bytes)'}: {e}") from None


class _SentencePieceText:
    """Encoding, decoding and batching over a sentencepiece model (shared by both tokenizers by composition)."""

    def __init__(self, processor: spm.SentencePieceProcessor, special_ids: set[int]) -> None:
        self.sp = processor
        self.special_ids = special_ids

    def unknown_characters(self, text: str) -> list[str]:
        """Characters of ``text`` that map to ``<unk>``, in order of first appearance."""
        ids = self.sp.encode(text)
        pieces = self.sp.encode(text, out_type=str)
        unk = self.sp.unk_id()
        seen: dict[str, None] = {}
        for i, piece in zip(ids, pieces):
            if i == unk:
                for ch in piece:
                    seen.setdefault(ch, None)
        return list(seen)

    def encode(self, text: str, strict: bool, bos: int | None, eos: int | None) -> list[int]:
        if not isinstance(text, str):
            raise InputError(f"text to encode must be a string, got {type(text).__name__}")
        if strict:
            unknown = self.unknown_characters(text)
            if unknown:
                listed = ", ".join(repr(c) for c in unknown)
                raise InputError(f"text has characters outside the tokenizer's vocabulary ({listed}): {text!r}")
        ids = self.sp.encode(text)
        return ([bos] if bos is not None else []) + ids + ([eos] if eos is not None else [])

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        size = self.sp.get_piece_size()
        kept = []
        for i in map(int, ids):
            if i in self.special_ids:
                continue
            if not 0 <= i < size:
                raise InputError(f"cannot decode token id {i}: the vocabulary has ids 0..{size - 1} and "
                                 f"special ids {sorted(self.special_ids)}")
            kept.append(i)
        return self.sp.decode(kept)


class SpeechT5CharTokenizer:
    """SpeechT5's character tokenizer: ``spm_char.model`` pieces plus ``<mask>`` and ``<ctc_blank>``.

    ``encode`` returns the ids ``transformers.SpeechT5Tokenizer`` gives for the same model file (the text's
    sentencepiece ids followed by ``</s>``). Unlike the transformers tokenizer, special-token strings written in
    the text (``"<s>"``) are encoded as ordinary characters, never as special ids. Characters outside the
    vocabulary become ``<unk>`` (sentencepiece merges a run of them into one ``<unk>``), or raise with
    ``strict=True``.

    Args:
        model: Path of a character sentencepiece model, or its serialized bytes.
        added_tokens: Extra tokens appended after the sentencepiece pieces, name to id. Defaults to
            ``<mask>`` = piece count and ``<ctc_blank>`` = piece count + 1 (79 and 80 for SpeechT5).
        normalize: Spell out numbers with :func:`normalize_numbers` before encoding. This is mmseq's own
            normaliser, not transformers' ``EnglishNumberNormalizer``, so ids of texts with numbers can differ
            from ``SpeechT5Tokenizer(normalize=True)``.
    """

    model_file_name = "spm_char.model"

    def __init__(self, model: str | os.PathLike | bytes, added_tokens: dict[str, int] | None = None,
                 normalize: bool = False) -> None:
        source = model if isinstance(model, bytes) else Path(model)
        self._proto = source if isinstance(source, bytes) else None
        self._path = source if isinstance(source, Path) else None
        sp = _load_processor(source, "sentencepiece model")
        pieces = sp.get_piece_size()
        if added_tokens is None:
            added_tokens = {"<mask>": pieces, "<ctc_blank>": pieces + 1}
        for name, index in added_tokens.items():
            if index < pieces and sp.id_to_piece(index) != name:
                raise InputError(f"added token {name!r} has id {index}, which is the sentencepiece piece "
                                 f"{sp.id_to_piece(index)!r} of {model!r}")
        self.added_tokens = dict(added_tokens)
        self.normalize = normalize
        self.bos_id, self.pad_id, self.eos_id, self.unk_id = sp.bos_id(), sp.pad_id(), sp.eos_id(), sp.unk_id()
        self.mask_id = self.added_tokens.get("<mask>", -1)
        self.ctc_blank_id = self.added_tokens.get("<ctc_blank>", -1)
        self.vocab_size = max([pieces - 1, *self.added_tokens.values()]) + 1
        specials = {self.bos_id, self.pad_id, self.eos_id, self.unk_id, *self.added_tokens.values()}
        self._text = _SentencePieceText(sp, {i for i in specials if i >= 0})

    @classmethod
    def from_dir(cls, directory: str | os.PathLike, normalize: bool = False) -> SpeechT5CharTokenizer:
        """Load from a checkpoint folder holding ``spm_char.model`` (the Hugging Face layout).

        Added tokens are read from ``added_tokens.json`` or from ``tokenizer_config.json``'s
        ``added_tokens_decoder`` when present (ids at or above the piece count only); otherwise the SpeechT5
        defaults apply.

        Args:
            directory: Folder with ``spm_char.model``.
            normalize: Spell out numbers before encoding.

        Raises:
            InputError: The folder has no ``spm_char.model``, or its token files cannot be parsed.
        """
        directory = Path(directory)
        model = directory / cls.model_file_name
        if not model.is_file():
            raise InputError(f"no {cls.model_file_name} in tokenizer folder {directory}")
        pieces = _load_processor(model, "sentencepiece model").get_piece_size()
        added: dict[str, int] = {}
        added_file, config_file = directory / "added_tokens.json", directory / "tokenizer_config.json"
        try:
            if added_file.is_file():
                added = {str(k): int(v) for k, v in json.loads(added_file.read_text()).items()}
            elif config_file.is_file():
                decoder = json.loads(config_file.read_text()).get("added_tokens_decoder", {})
                added = {str(v["content"]): int(k) for k, v in decoder.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            bad = added_file if added_file.is_file() else config_file
            raise InputError(f"cannot read added tokens from {bad}: {e}") from None
        added = {k: v for k, v in added.items() if v >= pieces}
        return cls(model, added_tokens=added or None, normalize=normalize)

    @classmethod
    def train(cls, texts: Iterable[str], directory: str | os.PathLike | None = None,
              normalize: bool = False, symbols: Sequence[str] = ()) -> SpeechT5CharTokenizer:
        """Train a character model on ``texts`` with SpeechT5's special ids (every character seen is kept).

        Args:
            texts: Training sentences.
            directory: If given, ``spm_char.model`` is written there (atomically).
            normalize: Spell out numbers before encoding (also applied to the training texts).
            symbols: Strings kept as pieces of their own, in the text and in ``decode``, that sentencepiece
                would otherwise drop or normalise: ``["\\n"]`` keeps newlines, which otherwise become spaces.

        Returns:
            The trained tokenizer.
        """
        texts = [normalize_numbers(t) if normalize else t for t in texts]
        alphabet = {ch for t in texts for ch in t if not ch.isspace()} - set(symbols)
        options = {"user_defined_symbols": list(symbols)} if symbols else {}
        proto = _train_sentencepiece(texts, "char", vocab_size=len(alphabet) + len(symbols) + 5,
                                     character_coverage=1.0, **options)
        tokenizer = cls(proto, normalize=normalize)
        if directory is not None:
            tokenizer.save(directory)
        return tokenizer

    def save(self, directory: str | os.PathLike) -> Path:
        """Write ``spm_char.model`` and ``added_tokens.json`` into ``directory``; returns the model path."""
        directory = Path(directory)
        proto = self._proto if self._proto is not None else self._path.read_bytes()
        atomic_write_bytes(directory / self.model_file_name, proto)
        atomic_write_bytes(directory / "added_tokens.json", json.dumps(self.added_tokens, indent=1).encode())
        return directory / self.model_file_name

    def unknown_characters(self, text: str) -> list[str]:
        """Characters of ``text`` outside the vocabulary, in order of first appearance."""
        return self._text.unknown_characters(normalize_numbers(text) if self.normalize else text)

    def encode(self, text: str, add_eos: bool = True, strict: bool = False) -> list[int]:
        """Token ids of ``text``, followed by ``</s>`` (as ``SpeechT5Tokenizer`` does) unless ``add_eos=False``.

        Raises:
            InputError: With ``strict=True``, when ``text`` has characters outside the vocabulary (named).
        """
        if self.normalize:
            text = normalize_numbers(text)
        return self._text.encode(text, strict, None, self.eos_id if add_eos else None)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Text of ``ids``, leaving out special ids (bos, pad, eos, unk, mask, ctc_blank)."""
        return self._text.decode(ids)

    def batch_encode(self, texts: Sequence[str], add_eos: bool = True,
                     strict: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and right-pad with ``<pad>``: ``(ids [B, L], lengths [B])``."""
        return pad_id_lists([self.encode(t, add_eos=add_eos, strict=strict) for t in texts], self.pad_id)

    def __len__(self) -> int:
        return self.vocab_size


class BPETokenizer:
    """Sentencepiece BPE tokenizer for SLU and translation targets, with SpeechT5's special ids.

    ``<s>`` = 0, ``<pad>`` = 1, ``</s>`` = 2, ``<unk>`` = 3.

    Args:
        model: Path of a sentencepiece model file, or its serialized bytes.
    """

    def __init__(self, model: str | os.PathLike | bytes) -> None:
        source = model if isinstance(model, bytes) else Path(model)
        self._proto = source if isinstance(source, bytes) else None
        self._path = source if isinstance(source, Path) else None
        sp = _load_processor(source, "BPE model")
        self.bos_id, self.pad_id, self.eos_id, self.unk_id = sp.bos_id(), sp.pad_id(), sp.eos_id(), sp.unk_id()
        self.vocab_size = sp.get_piece_size()
        specials = {self.bos_id, self.pad_id, self.eos_id, self.unk_id}
        self._text = _SentencePieceText(sp, {i for i in specials if i >= 0})

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int, path: str | os.PathLike | None = None,
              character_coverage: float = 1.0) -> BPETokenizer:
        """Train a BPE model (``vocab_size`` is an upper bound: small corpora give fewer pieces).

        Args:
            texts: Training sentences.
            vocab_size: Largest vocabulary, special pieces included.
            path: If given, the model file is written there (atomically).
            character_coverage: Share of characters the model must cover (1.0 keeps all).
        """
        if vocab_size < 8:
            raise InputError(f"BPE vocab_size must be at least 8, got {vocab_size}")
        proto = _train_sentencepiece(texts, "bpe", vocab_size=vocab_size, character_coverage=character_coverage)
        tokenizer = cls(proto)
        if path is not None:
            tokenizer.save(path)
        return tokenizer

    @classmethod
    def load(cls, path: str | os.PathLike) -> BPETokenizer:
        """Load a model file written by :meth:`save` (or any sentencepiece model)."""
        return cls(Path(path))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the sentencepiece model file to ``path``, atomically."""
        path = Path(path)
        atomic_write_bytes(path, self._proto if self._proto is not None else self._path.read_bytes())
        return path

    def unknown_characters(self, text: str) -> list[str]:
        """Characters of ``text`` outside the vocabulary, in order of first appearance."""
        return self._text.unknown_characters(text)

    def encode(self, text: str, add_bos: bool = False, add_eos: bool = True, strict: bool = False) -> list[int]:
        """Token ids of ``text`` with optional ``<s>`` before and ``</s>`` after."""
        return self._text.encode(text, strict, self.bos_id if add_bos else None, self.eos_id if add_eos else None)

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        """Text of ``ids``, leaving out special ids."""
        return self._text.decode(ids)

    def batch_encode(self, texts: Sequence[str], add_bos: bool = False, add_eos: bool = True,
                     strict: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode and right-pad with ``<pad>``: ``(ids [B, L], lengths [B])``."""
        encoded = [self.encode(t, add_bos=add_bos, add_eos=add_eos, strict=strict) for t in texts]
        return pad_id_lists(encoded, self.pad_id)

    def __len__(self) -> int:
        return self.vocab_size


# ---------------------------------------------------------------------------------------------------------------
# Number normalisation for TTS input: digits become English words.

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
         "sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ["", "thousand", "million", "billion", "trillion", "quadrillion"]
# Ordinal forms of the words a cardinal can end with.
_ORDINAL_WORDS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth", "nine": "ninth",
    "twelve": "twelfth", "twenty": "twentieth", "thirty": "thirtieth", "forty": "fortieth", "fifty": "fiftieth",
    "sixty": "sixtieth", "seventy": "seventieth", "eighty": "eightieth", "ninety": "ninetieth",
}
# Currency symbol -> (singular unit, plural unit, singular cent, plural cent).
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
}

_NUMBER = r"\d{1,3}(?:,\d{3})+|\d+"
_CURRENCY_RE = re.compile(r"([$£€])\s?(" + _NUMBER + r")(?:\.(\d{1,2}))?\b")
_ORDINAL_RE = re.compile(r"\b(" + _NUMBER + r")(st|nd|rd|th)\b", re.IGNORECASE)
_PERCENT_RE = re.compile(r"((?<!\w)-)?(" + _NUMBER + r")(?:\.(\d+))?\s?%")
_DECIMAL_RE = re.compile(r"(?<![\d.])((?<!\w)-)?(" + _NUMBER + r")\.(\d+)\b(?!\.\d)")
_YEAR_RE = re.compile(r"(?<![\d,.$£€-])\b(1[1-9]\d\d|20\d\d)\b(?![,.]\d)")
_INTEGER_RE = re.compile(r"(?<![\d.])((?<!\w)-)?\b(" + _NUMBER + r")\b(?!\.\d)")


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
        if n:
            words.append(_ONES[n])
    elif n or not words:
        words.append(_ONES[n])
    return words


def number_to_words(n: int) -> str:
    """English cardinal of an integer: ``1234`` -> ``"one thousand two hundred thirty four"``."""
    if n < 0:
        return "minus " + number_to_words(-n)
    if n == 0:
        return "zero"
    if n >= 1000 ** len(_SCALES):
        return " ".join(_ONES[int(d)] for d in str(n))  # read absurdly long numbers digit by digit
    words: list[str] = []
    for power in range(len(_SCALES) - 1, -1, -1):
        group = (n // 1000**power) % 1000
        if group:
            words += _below_thousand(group) + ([_SCALES[power]] if power else [])
    return " ".join(words)


def ordinal_to_words(n: int) -> str:
    """English ordinal: ``21`` -> ``"twenty first"``."""
    words = number_to_words(n).split()
    last = words[-1]
    words[-1] = _ORDINAL_WORDS.get(last, last + "th")
    return " ".join(words)


def year_to_words(n: int) -> str:
    """A year read in pairs: ``1984`` -> ``"nineteen eighty four"``, ``1905`` -> ``"nineteen oh five"``."""
    if 2000 <= n < 2010 or n % 1000 == 0:
        return number_to_words(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{number_to_words(high)} hundred"
    return f"{number_to_words(high)} {'oh ' if low < 10 else ''}{number_to_words(low)}"


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _digits(text: str) -> str:
    return " ".join(_ONES[int(d)] for d in text)


def _currency(match: re.Match) -> str:
    one, many, cent, cents = _CURRENCIES[match.group(1)]
    whole = _int(match.group(2))
    fraction = int(match.group(3).ljust(2, "0")) if match.group(3) else 0
    parts = []
    if whole or not fraction:
        parts.append(f"{number_to_words(whole)} {one if whole == 1 else many}")
    if fraction:
        parts.append(f"{number_to_words(fraction)} {cent if fraction == 1 else cents}")
    return " and ".join(parts)


def normalize_numbers(text: str) -> str:
    """Spell out the numbers of an English text for TTS.

    Handles, in this order: currency (``$5`` -> "five dollars", ``$2.50`` -> "two dollars and fifty cents";
    also £ and €), ordinals (``1st``, ``22nd``), percentages, decimals (``3.14`` -> "three point one four"),
    years (a lone 1100-2099: ``1984`` -> "nineteen eighty four"), and integers with optional thousands commas
    and minus sign (``-1,000`` -> "minus one thousand"). Other text is unchanged.

    Args:
        text: Input text.

    Returns:
        The text with those numbers written as words.
    """
    text = _CURRENCY_RE.sub(_currency, text)
    text = _ORDINAL_RE.sub(lambda m: ordinal_to_words(_int(m.group(1))), text)

    def percent(m: re.Match) -> str:
        value = number_to_words(_int(m.group(2))) + (f" point {_digits(m.group(3))}" if m.group(3) else "")
        return ("minus " if m.group(1) else "") + value + " percent"

    text = _PERCENT_RE.sub(percent, text)
    text = _DECIMAL_RE.sub(
        lambda m: ("minus " if m.group(1) else "") + f"{number_to_words(_int(m.group(2)))} point "
        f"{_digits(m.group(3))}", text)
    text = _YEAR_RE.sub(lambda m: year_to_words(int(m.group(1))), text)
    text = _INTEGER_RE.sub(lambda m: ("minus " if m.group(1) else "") + number_to_words(_int(m.group(2))), text)
    return text


class TransformersTokenizer:
    """A transformers tokenizer with the interface mmseq's tokenizers share: ``encode(text, add_eos)``,
    ``decode(ids)``, ``eos_id``, ``pad_id`` (the EOS id when it has no pad token, as GPT-2), ``save(directory)``
    (its files beside a checkpoint's weights)."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.eos_id = tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_id

    def encode(self, text: str, add_eos: bool = True) -> list[int]:
        ids = list(self.tokenizer.encode(text, add_special_tokens=False))
        return ids + [self.eos_id] if add_eos else ids

    def decode(self, ids: Any) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def save(self, directory: str | Path) -> Path:
        self.tokenizer.save_pretrained(str(directory))
        return Path(directory)

    def __len__(self) -> int:
        return len(self.tokenizer)


def checkpoint_tokenizer(directory: str | os.PathLike) -> Any:
    """The tokenizer stored beside a checkpoint's weights, or None when there is none: ``spm_char.model`` (a
    :class:`SpeechT5CharTokenizer`), else a transformers tokenizer (``tokenizer.json`` / ``tokenizer_config.json``,
    as a LiMBeR model on a transformers LM saves its LM's tokenizer), wrapped in :class:`TransformersTokenizer`."""
    directory = Path(directory)
    if (directory / "spm_char.model").is_file():
        return SpeechT5CharTokenizer.from_dir(directory)
    if any((directory / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        from transformers import AutoTokenizer

        return TransformersTokenizer(AutoTokenizer.from_pretrained(str(directory)))
    return None
