"""Parity with s3prl's TERA code on the same random weights, checkpoint import/export, and the restricted unpickler."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

import mmseq
from mmseq.errors import CheckpointError
from mmseq.interop.s3prl import is_s3prl_checkpoint, read_checkpoint, save_s3prl
from s3prl_reference import s3prl_root

pytestmark = pytest.mark.skipif(s3prl_root() is None, reason="s3prl is not installed (pip install --no-deps s3prl)")

TINY = {"hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 128}


def transformer_config(**sizes) -> dict:
    return {"input_dim": -1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "share_layer": False, "pre_layer_norm": False,
            **sizes}


def s3prl_pair(sizes: dict, input_dim: int = 80, seed: int = 0):
    """s3prl's TransformerModel + SpecHead with random weights (biases and norms perturbed too), in eval mode."""
    from s3prl_reference import s3prl_model

    mod = s3prl_model()
    torch.manual_seed(seed)
    config = mod.TransformerConfig(transformer_config(**sizes))
    transformer = mod.TransformerModel(config, input_dim)
    head = mod.TransformerSpecPredictionHead(config, input_dim)
    with torch.no_grad():
        for p in list(transformer.parameters()) + list(head.parameters()):
            p.add_(torch.randn_like(p) * 0.05)
    return transformer.eval(), head.eval()


def s3prl_states(transformer, head, sizes: dict, legacy: bool = False, sequence_length: int = 1500) -> dict:
    """The dict s3prl's pretraining runner saves (runner.py + pretrain_expert.add_state_to_save)."""
    upstream = {"transformer": transformer_config(**sizes),
                "task": {"loss": "L1", "sequence_length": sequence_length, "mask_proportion": 0.15},
                "audio": {"target_level": -25, "win_ms": 25, "hop_ms": 10, "n_freq": 201, "n_mels": 80,
                          "n_mfcc": 13, "input": {"feat_type": "mel", "channel": 0, "log": True, "delta": 0,
                                                  "cmvn": True}}}
    optimizer = torch.optim.AdamW(list(transformer.parameters()) + list(head.parameters()), lr=2e-4)
    runner = {"runner": {"total_steps": 1000000, "gradient_clipping": 5.0}, "optimizer": {"lr": 2e-4}}
    states = {"Optimizer": optimizer.state_dict(), "Step": 1000,
              "Args": argparse.Namespace(upstream="tera", expdir="result/tera", seed=1337, multi_gpu=False),
              "Transformer": transformer.state_dict(), "SpecHead": head.state_dict()}
    if legacy:  # old layout: upstream config under "Config", runner config under "Runner", TF-style names
        states["Config"], states["Runner"] = upstream, runner
        states["Transformer"] = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                 "LayerNorm.beta"): v for k, v in states["Transformer"].items()}
    else:
        states["Config"], states["Upstream_Config"] = runner, upstream
    return states


def s3prl_forward(transformer, head, frames: torch.Tensor, lengths: torch.Tensor):
    """s3prl's upstream forward: positions from its table, attention mask from the lengths."""
    from s3prl_reference import s3prl_task

    pos = s3prl_task().fast_position_encoding(frames.shape[1], transformer.config.hidden_size)
    mask = (torch.arange(frames.shape[1])[None, :] < lengths[:, None]).float()
    with torch.no_grad():
        layers = transformer(frames, pos.expand(frames.shape[0], -1, -1), mask, output_all_encoded_layers=True)
        prediction, _ = head(layers[-1])
    return layers, prediction


def batch(input_dim: int = 80, lengths=(50, 37, 9), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor(lengths)
    frames = torch.randn(len(lengths), int(lengths.max()), input_dim, generator=g)
    frames[torch.arange(frames.shape[1])[None, :] >= lengths[:, None]] = 0
    return frames, lengths


def max_valid_diff(a: torch.Tensor, b: torch.Tensor, lengths: torch.Tensor) -> float:
    valid = torch.arange(a.shape[1])[None, :] < lengths[:, None]
    return (a - b).abs()[valid].max().item()


@pytest.mark.parametrize("legacy", [False, True])
def test_loaded_checkpoint_gives_s3prl_hidden_states(tmp_path, legacy):
    transformer, head = s3prl_pair(TINY)
    path = tmp_path / "states-1000.ckpt"
    torch.save(s3prl_states(transformer, head, TINY, legacy=legacy), path)
    assert is_s3prl_checkpoint(path)
    model = mmseq.load(path)
    assert model.mmseq_config["builder"] == "tera_base" and model.mmseq_config["args"]["dim"] == 64
    frames, lengths = batch()
    ref_layers, ref_pred = s3prl_forward(transformer, head, frames, lengths)
    with torch.no_grad():
        feats = model.forward_features(frames, lengths)
        pred = model(frames, lengths)
    assert len(feats.hidden_states) == 4 and feats.downsample_rate == 160
    for ours, theirs in zip(feats.hidden_states, ref_layers, strict=True):
        assert max_valid_diff(ours, theirs, lengths) < 1e-5
    assert max_valid_diff(pred, ref_pred, lengths) < 1e-5


def test_base_size_parity(tmp_path):
    """tera_base sizes (3 x 768, 12 heads, FFN 3072): every hidden state within 1e-5 of s3prl's."""
    sizes = {"hidden_size": 768, "num_hidden_layers": 3, "num_attention_heads": 12, "intermediate_size": 3072}
    transformer, head = s3prl_pair(sizes)
    path = tmp_path / "base.ckpt"
    torch.save(s3prl_states(transformer, head, sizes), path)
    model = mmseq.load(path)
    assert sum(p.numel() for n, p in model.named_parameters() if not n.startswith("postnet.")) == 21_327_360
    frames, lengths = batch(lengths=(120, 64))
    ref_layers, _ = s3prl_forward(transformer, head, frames, lengths)
    with torch.no_grad():
        feats = model.forward_features(frames, lengths)
    diffs = [max_valid_diff(o, t, lengths) for o, t in zip(feats.hidden_states, ref_layers, strict=True)]
    assert max(diffs) < 1e-5, diffs


def test_long_inputs_are_chunked_like_s3prl(tmp_path):
    transformer, head = s3prl_pair(TINY)
    path = tmp_path / "chunk.ckpt"
    torch.save(s3prl_states(transformer, head, TINY, sequence_length=40), path)
    model = mmseq.load(path)
    assert model.max_input_frames == 40
    frames, _ = batch(lengths=(100, 100))  # full rows: s3prl's chunks see no padding
    lengths = torch.tensor([100, 100])
    chunks = torch.chunk(frames, math.ceil(100 / 40), dim=1)  # s3prl builder._forward
    pieces = [s3prl_forward(transformer, head, c, torch.full((2,), c.shape[1]))[0] for c in chunks]
    ref = [torch.cat(layer, dim=1) for layer in zip(*pieces)]
    with torch.no_grad():
        feats = model.forward_features(frames, lengths)
    for ours, theirs in zip(feats.hidden_states, ref, strict=True):
        assert ours.shape == theirs.shape and (ours - theirs).abs().max() < 1e-5


def test_export_loads_into_s3prl_and_round_trips(tmp_path):
    from s3prl_reference import s3prl_model

    model = mmseq.create_model("tera_tiny", dim=64, heads=4, ffn_dim=128, layers=3).eval()
    path = save_s3prl(model, tmp_path / "export.ckpt")
    states = read_checkpoint(path)
    mod = s3prl_model()
    config = mod.TransformerConfig(states["Upstream_Config"]["transformer"])
    transformer, head = mod.TransformerModel(config, 80).eval(), mod.TransformerSpecPredictionHead(config, 80).eval()
    transformer.load_state_dict(states["Transformer"])  # strict: every key, every shape
    head.load_state_dict(states["SpecHead"])
    frames, lengths = batch()
    ref_layers, ref_pred = s3prl_forward(transformer, head, frames, lengths)
    with torch.no_grad():
        feats, pred = model.forward_features(frames, lengths), model(frames, lengths)
    for ours, theirs in zip(feats.hidden_states, ref_layers, strict=True):
        assert max_valid_diff(ours, theirs, lengths) < 1e-5
    assert max_valid_diff(pred, ref_pred, lengths) < 1e-5
    reloaded = mmseq.load(path)
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


class Exploit:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_untrusted_global_is_refused_and_named(tmp_path, capsys):
    transformer, head = s3prl_pair(TINY)
    states = s3prl_states(transformer, head, TINY)
    states["Scheduler"] = Exploit()
    for zip_format in (True, False):
        path = tmp_path / f"evil-{zip_format}.ckpt"
        torch.save(states, path, _use_new_zipfile_serialization=zip_format)
        assert is_s3prl_checkpoint(path)
        with pytest.raises(CheckpointError, match="untrusted global.*print"):
            mmseq.load(path)
    assert "this must never run" not in capsys.readouterr().out


def test_checkpoint_errors_are_clear(tmp_path):
    transformer, head = s3prl_pair(TINY)
    states = s3prl_states(transformer, head, TINY)
    states["Upstream_Config"]["transformer"]["pre_layer_norm"] = True
    torch.save(states, tmp_path / "preln.ckpt")
    with pytest.raises(CheckpointError, match="pre-LN"):
        mmseq.load(tmp_path / "preln.ckpt")
    states = s3prl_states(transformer, head, TINY)
    del states["Transformer"]["encoder.layer.2.output.dense.weight"]
    torch.save(states, tmp_path / "cut.ckpt")
    with pytest.raises(CheckpointError, match="missing.*layer.2.output.dense.weight"):
        mmseq.load(tmp_path / "cut.ckpt")
