"""Tokenizers: SpeechT5 id parity with transformers, BPE round trips, number normalisation."""

from __future__ import annotations

import json
import string

import pytest
import torch

from mmseq.data.tokenizers import BPETokenizer, SpeechT5CharTokenizer, normalize_numbers, number_to_words
from mmseq.errors import InputError

# 74 distinct non-space characters: with the 4 specials and "▁" that is SpeechT5's 79 sentencepiece pieces.
ALPHABET = string.ascii_lowercase + string.ascii_uppercase + string.digits + ".,!?'\"-:;()&"
assert len(set(ALPHABET)) == 74
CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "speech is the most natural way of communicating",
    f"all characters once: {' '.join(ALPHABET)}",
    "hello world, isn't it? yes: it is (mostly) fine & \"quoted\" - ok!",
] * 3
PROBES = [
    "hello world",
    "Hello World!",
    "naïve café über",  # characters outside the vocabulary, alone and next to known ones
    "  leading and  double  spaces ",
    "€€€ run of unknowns",
    "digits 0123456789",
    "",
]


@pytest.fixture(scope="module")
def char_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("spm_char")
    SpeechT5CharTokenizer.train(CORPUS, directory)
    return directory


@pytest.fixture(scope="module")
def char_tokenizer(char_dir) -> SpeechT5CharTokenizer:
    return SpeechT5CharTokenizer.from_dir(char_dir)


def test_vocabulary_layout_is_speecht5s(char_tokenizer):
    tok = char_tokenizer
    assert (tok.bos_id, tok.pad_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    assert (tok.mask_id, tok.ctc_blank_id, tok.vocab_size, len(tok)) == (79, 80, 81, 81)


def test_ids_and_decode_match_transformers(char_dir, char_tokenizer):
    transformers = pytest.importorskip("transformers")
    hf = transformers.SpeechT5Tokenizer(vocab_file=str(char_dir / "spm_char.model"))
    for text in PROBES:
        ids = char_tokenizer.encode(text)
        assert ids == hf(text)["input_ids"], text
        assert ids[-1] == 2
        assert char_tokenizer.decode(ids) == hf.decode(ids, skip_special_tokens=True), text
    assert 3 in char_tokenizer.encode("naïve")


def test_decode_round_trip_and_specials_skipped(char_tokenizer):
    text = "hello world, it is (mostly) fine"
    ids = char_tokenizer.encode(text)
    assert char_tokenizer.decode(ids) == text
    assert char_tokenizer.decode(torch.tensor([0, *ids[:-1], 79, 80, 2, 1, 1])) == text
    with pytest.raises(InputError, match="cannot decode token id 81: the vocabulary has ids 0..78"):
        char_tokenizer.decode([5, 81])


def test_unknown_characters_and_strict(char_tokenizer):
    assert char_tokenizer.unknown_characters("naïve café €") == ["ï", "é", "€"]
    with pytest.raises(InputError, match=r"outside the tokenizer's vocabulary \('ï', 'é'\): 'naïve café'"):
        char_tokenizer.encode("naïve café", strict=True)
    assert char_tokenizer.encode("fine", strict=True)[-1] == 2


def test_batch_encode_pads_with_pad_id(char_tokenizer):
    ids, lengths = char_tokenizer.batch_encode(["ab", "abcd"])
    assert lengths.tolist() == [4, 6]  # "▁" + chars + "</s>"
    assert ids.shape == (2, 6) and ids[0, 4:].tolist() == [1, 1]
    assert ids[1].tolist() == char_tokenizer.encode("abcd")


def test_added_tokens_from_transformers_config(char_dir, tmp_path):
    (tmp_path / "spm_char.model").write_bytes((char_dir / "spm_char.model").read_bytes())
    config = {"added_tokens_decoder": {
        "0": {"content": "<s>"}, "79": {"content": "<mask>"}, "80": {"content": "<ctc_blank>"}}}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tok = SpeechT5CharTokenizer.from_dir(tmp_path)
    assert (tok.mask_id, tok.ctc_blank_id, tok.vocab_size) == (79, 80, 81)
    (tmp_path / "added_tokens.json").write_text("{not json")
    with pytest.raises(InputError, match=r"cannot read added tokens from .*added_tokens\.json"):
        SpeechT5CharTokenizer.from_dir(tmp_path)


def test_missing_model_names_the_folder(tmp_path):
    with pytest.raises(InputError, match=rf"no spm_char.model in tokenizer folder {tmp_path}"):
        SpeechT5CharTokenizer.from_dir(tmp_path)


def test_normalize_option_spells_numbers(char_dir):
    tok = SpeechT5CharTokenizer.from_dir(char_dir, normalize=True)
    assert tok.encode("room 12") == tok.encode("room twelve")


def test_trained_char_tokenizer_keeps_symbols_it_is_given(tmp_path):
    texts = ["Q: how many? A: 2\nQ: what color? A: red", "a red cube"]
    plain = SpeechT5CharTokenizer.train(texts)
    assert plain.decode(plain.encode("A: 2\nQ: b")) == "A: 2 Q: b"  # sentencepiece's whitespace rule
    kept = SpeechT5CharTokenizer.train(texts, directory=tmp_path, symbols=["\n"])
    assert len(kept) == len(plain) + 1
    ids = kept.encode("A: 2\nQ: b", add_eos=False)
    assert kept.decode(ids) == "A: 2\nQ: b" and ids.count(kept.encode("\n", add_eos=False)[-1]) == 1
    assert kept.encode("A: 2\n", add_eos=False)[-1] != kept.encode("A: 2 ", add_eos=False)[-1]
    loaded = SpeechT5CharTokenizer.from_dir(tmp_path)
    assert loaded.encode("x\ny") == kept.encode("x\ny")


def test_bpe_train_save_load_round_trip(tmp_path):
    texts = [f"{w} {v}" for w in ["play the music", "turn off the lights", "what is the weather"]
             for v in ["now", "please", "in the kitchen", "today"]] * 5
    tok = BPETokenizer.train(texts, vocab_size=60, path=tmp_path / "bpe.model")
    loaded = BPETokenizer.load(tmp_path / "bpe.model")
    assert (loaded.bos_id, loaded.pad_id, loaded.eos_id, loaded.unk_id) == (0, 1, 2, 3)
    assert 8 < loaded.vocab_size <= 60
    for text in ["turn off the music please", "what is the weather today"]:
        ids = loaded.encode(text)
        assert ids == tok.encode(text) and ids[-1] == 2
        assert len(ids) - 1 < len(text.replace(" ", ""))  # merges happened
        assert loaded.decode(ids) == text
    assert loaded.encode("play", add_bos=True, add_eos=False)[0] == 0
    ids, lengths = loaded.batch_encode(["play", "turn off the lights now"])
    assert ids[0, lengths[0]:].eq(1).all() and lengths[1] == ids.shape[1]
    with pytest.raises(InputError, match=r"outside the tokenizer's vocabulary \('Z'\)"):
        loaded.encode("Zplay", strict=True)


def test_bpe_errors(tmp_path):
    with pytest.raises(InputError, match="no non-empty text"):
        BPETokenizer.train(["", "  "], vocab_size=50)
    with pytest.raises(InputError, match=r"BPE model not found: .*missing\.model"):
        BPETokenizer.load(tmp_path / "missing.model")
    (tmp_path / "junk.model").write_bytes(b"junk")
    with pytest.raises(InputError, match=r"cannot load BPE model .*junk\.model"):
        BPETokenizer.load(tmp_path / "junk.model")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("I have 3 cats", "I have three cats"),
        ("it cost $5", "it cost five dollars"),
        ("$1 and $2.50 and £3 and €0.01",
         "one dollar and two dollars and fifty cents and three pounds and one cent"),
        ("the 1st, 2nd, 3rd, 11th, 21st and 100th", "the first, second, third, eleventh, twenty first and "
         "one hundredth"),
        ("in 1984 and 1905 and 2008 and 2024 and 1800", "in nineteen eighty four and nineteen oh five and two "
         "thousand eight and twenty twenty four and eighteen hundred"),
        ("pi is 3.14", "pi is three point one four"),
        ("-7 degrees, 12.5% up", "minus seven degrees, twelve point five percent up"),
        ("1,000,000 people", "one million people"),
        ("version 1.2.3 and r2d2", "version 1.2.3 and r2d2"),
        ("no numbers here.", "no numbers here."),
    ],
)
def test_normalize_numbers(text, expected):
    assert normalize_numbers(text) == expected


def test_number_to_words_table():
    assert number_to_words(0) == "zero"
    assert number_to_words(115) == "one hundred fifteen"
    assert number_to_words(2_000_017) == "two million seventeen"
    assert number_to_words(-40) == "minus forty"
