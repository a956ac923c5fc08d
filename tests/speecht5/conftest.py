import pytest


@pytest.fixture
def no_hf_prenet_dropout(monkeypatch):
    """transformers' speech-decoder pre-net dropout cannot be switched off (p=0 zeroes the input): make it the
    identity there, as ``speech_prenet_dropout=0`` is in mmseq."""
    from transformers.models.speecht5 import modeling_speecht5

    monkeypatch.setattr(modeling_speecht5.SpeechT5SpeechDecoderPrenet, "_consistent_dropout",
                        lambda self, x, p: x)
