"""Every registered model: forward, backward (every trainable parameter gets a gradient) and an exact save/load round
trip (tiny sizes)."""

import fnmatch

import pytest
import torch

import mmseq
from mmseq.errors import ConfigError

# Models whose default size is too large for a CPU test pass ``TINY_OVERRIDES`` here when they are added.
TINY_OVERRIDES: dict[str, dict] = {}
# Layers skipped at random while training (layerdrop) get no gradient in that step by design: switched off here,
# so that every parameter must be used.
NO_LAYERDROP = ("layerdrop", "encoder_layerdrop", "decoder_layerdrop")
# full-size variants are covered by their tiny siblings (deeplabv3_resnet50 is torchvision's model)
SKIP_PATTERNS = ("*_base", "*_large", "adapnet_pp", "adapnet_pp_early_fusion", "adapnet_pp_late_fusion", "ssma",
                 "deeplabv3_resnet50")


def _outputs(out):
    """All floating tensors inside a model output (tensor, dataclass, tuple, dict)."""
    if isinstance(out, torch.Tensor):
        return [out] if out.is_floating_point() else []
    if hasattr(out, "__dataclass_fields__"):
        out = [getattr(out, f) for f in out.__dataclass_fields__]
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)):
        return [t for item in out for t in _outputs(item)]
    return []


def tiny_models():
    import fnmatch

    names = mmseq.list_models()
    return [n for n in names if not any(fnmatch.fnmatch(n, p) for p in SKIP_PATTERNS) or n in TINY_OVERRIDES]


@pytest.mark.parametrize("name", tiny_models())
def test_forward_backward_and_round_trip(name, tmp_path):
    torch.manual_seed(0)
    arguments = mmseq.registry.model_arguments(name)
    overrides = {**{k: 0.0 for k in NO_LAYERDROP if k in arguments}, **TINY_OVERRIDES.get(name, {})}
    model = mmseq.create_model(name, **overrides)
    inputs = model.dummy_inputs(2)
    model.train()
    outs = _outputs(model(**inputs))
    assert outs, f"{name} returned no floating tensor"
    # A random projection of every output, so that no gradient cancels out (a softmax's sum has none).
    g = torch.Generator().manual_seed(0)
    sum((o.float() * torch.randn(o.shape, generator=g)).sum() for o in outs).backward()
    unused = getattr(model, "mmseq_unused_parameters", {})  # name pattern -> why the builder leaves it unused
    without = [n for n, p in model.named_parameters() if p.requires_grad
               and (p.grad is None or p.grad.abs().sum() == 0) and not any(fnmatch.fnmatch(n, pat) for pat in unused)]
    assert not without, f"{name}: trainable parameters without a gradient: {without[:10]}"

    model.eval()
    torch.manual_seed(1)  # some models keep dropout on at inference (SpeechT5's speech decoder pre-net)
    with torch.no_grad():
        before = _outputs(model(**inputs))
    mmseq.save_pretrained(model, tmp_path / name)
    loaded = mmseq.load(tmp_path / name).eval()
    assert loaded.mmseq_config == model.mmseq_config
    torch.manual_seed(1)
    with torch.no_grad():
        after = _outputs(loaded(**inputs))
    for a, b in zip(before, after, strict=True):
        assert torch.equal(a, b)


def test_list_models_filters_by_pattern():
    assert mmseq.list_models("text_transformer_*") == ["text_transformer_tiny", "text_transformer_tiny_preln"]
    assert "point_classifier_tiny" in mmseq.list_models()


def test_unknown_model_and_argument_are_named():
    with pytest.raises(ConfigError, match="unknown model 'text_transformer_tiniest'.*text_transformer_tiny"):
        mmseq.create_model("text_transformer_tiniest")
    with pytest.raises(ConfigError, match="'dropuot'.*Did you mean 'dropout'"):
        mmseq.create_model("text_transformer_tiny", dropuot=0.1)


def test_overrides_are_recorded_and_restored(tmp_path):
    model = mmseq.create_model("text_transformer_tiny", dim=16, heads=2)
    mmseq.save_pretrained(model, tmp_path / "m")
    loaded = mmseq.load(tmp_path / "m", dropout=0.0)
    assert loaded.mmseq_config == {"builder": "text_transformer_tiny", "args": {"dim": 16, "heads": 2, "dropout": 0.0}}
    assert loaded.encoder.dim == 16
