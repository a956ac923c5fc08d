"""Official Point-MAE checkpoints: files written with the official module names (a structure built here after the
official ``Point_MAE`` / ``PointTransformer`` classes) load with every key mapped and none left over, and a
mismatched file raises a CheckpointError naming the key."""

import pytest
import torch
from timm.models.vision_transformer import Block
from torch import nn

import mmseq
from mmseq.errors import CheckpointError
from mmseq.interop.point_mae import load_official_checkpoint
from mmseq.nn.points import PointTokenEmbedding

DIM, DEPTH, HEADS, GROUP = 64, 2, 4, 16  # point_mae_tiny


def _blocks(depth):
    holder = nn.Module()  # official TransformerEncoder / TransformerDecoder: a ``blocks`` ModuleList
    holder.blocks = nn.ModuleList(Block(DIM, HEADS, qkv_bias=False, norm_layer=nn.LayerNorm) for _ in range(depth))
    return holder


def _pos():
    return nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, DIM))


def official_pretrain(decoder_depth=1):
    """Module names of the official ``Point_MAE`` (pre-training)."""
    model = nn.Module()
    model.MAE_encoder = nn.Module()
    model.MAE_encoder.encoder = PointTokenEmbedding(3, DIM)  # official ``Encoder``: same convs and indices
    model.MAE_encoder.pos_embed = _pos()
    model.MAE_encoder.blocks = _blocks(DEPTH)
    model.MAE_encoder.norm = nn.LayerNorm(DIM)
    model.mask_token = nn.Parameter(torch.randn(1, 1, DIM))
    model.decoder_pos_embed = _pos()
    model.MAE_decoder = _blocks(decoder_depth)
    model.MAE_decoder.norm = nn.LayerNorm(DIM)
    model.increase_dim = nn.Sequential(nn.Conv1d(DIM, 3 * GROUP, 1))
    return model


def official_finetune(num_classes=10):
    """Module names of the official ``PointTransformer`` (fine-tuning)."""
    model = nn.Module()
    model.encoder = PointTokenEmbedding(3, DIM)
    model.cls_token = nn.Parameter(torch.randn(1, 1, DIM))
    model.cls_pos = nn.Parameter(torch.randn(1, 1, DIM))
    model.pos_embed = _pos()
    model.blocks = _blocks(DEPTH)
    model.norm = nn.LayerNorm(DIM)
    model.cls_head_finetune = nn.Sequential(nn.Linear(2 * DIM, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(),
                                            nn.Linear(256, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Dropout(),
                                            nn.Linear(256, num_classes))
    return model


def _randomised(module):
    torch.manual_seed(3)
    return {k: torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
            for k, v in module.state_dict().items()}


def test_pretrain_checkpoint_maps_every_key(tmp_path):
    state = _randomised(official_pretrain())
    torch.save({"base_model": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}, tmp_path / "pretrain.pth")
    model = load_official_checkpoint(mmseq.create_model("point_mae_tiny"), tmp_path / "pretrain.pth")
    ours = model.state_dict()
    assert len(ours) == len(state)  # a bijection: nothing left over on either side
    pairs = {"MAE_encoder.encoder.second_conv.1.running_var": "encoder.token_embed.second_conv.1.running_var",
             "MAE_encoder.blocks.blocks.1.attn.qkv.weight": "encoder.blocks.blocks.1.attn.qkv.weight",
             "MAE_encoder.norm.bias": "encoder.norm.bias", "mask_token": "mask_token",
             "MAE_decoder.blocks.0.mlp.fc2.weight": "decoder.blocks.0.mlp.fc2.weight",
             "MAE_decoder.norm.weight": "decoder_norm.weight", "increase_dim.0.weight": "rec_head.weight",
             "decoder_pos_embed.2.bias": "decoder_pos_embed.2.bias"}
    for official, name in pairs.items():
        assert torch.equal(ours[name], state[official]), official
    assert sorted(torch.cat([v.flatten().float() for v in ours.values()]).tolist()) == \
        sorted(torch.cat([v.flatten().float() for v in state.values()]).tolist())


def test_finetune_checkpoint_and_pretrained_encoder_into_classifier(tmp_path):
    state = _randomised(official_finetune())
    torch.save(state, tmp_path / "modelnet.pth")  # a plain state dict
    classifier = load_official_checkpoint(mmseq.create_model("point_mae_cls_tiny"), tmp_path / "modelnet.pth")
    ours = classifier.state_dict()
    assert len(ours) == len(state)
    assert torch.equal(ours["head.8.weight"], state["cls_head_finetune.8.weight"])
    assert torch.equal(ours["encoder.blocks.blocks.0.norm1.weight"], state["blocks.blocks.0.norm1.weight"])

    pretrain = _randomised(official_pretrain())
    torch.save({"base_model": pretrain}, tmp_path / "pretrain.pth")
    fresh = mmseq.create_model("point_mae_cls_tiny")
    head_before = fresh.head[0].weight.clone()
    load_official_checkpoint(fresh, tmp_path / "pretrain.pth")
    assert torch.equal(fresh.encoder.pos_embed[0].weight, pretrain["MAE_encoder.pos_embed.0.weight"])
    assert torch.equal(fresh.head[0].weight, head_before)


def test_mismatched_files_name_the_key(tmp_path):
    state = _randomised(official_pretrain())
    torch.save({"base_model": {**state, "MAE_encoder.cls_token": torch.zeros(1)}}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="MAE_encoder.cls_token"):
        load_official_checkpoint(mmseq.create_model("point_mae_tiny"), tmp_path / "extra.pth")
    torch.save({"base_model": state}, tmp_path / "wide.pth")
    with pytest.raises(CheckpointError, match="increase_dim.0.weight.*shape"):
        load_official_checkpoint(mmseq.create_model("point_mae_tiny", group_size=8), tmp_path / "wide.pth")
    missing = {k: v for k, v in state.items() if k != "MAE_decoder.norm.bias"}
    torch.save({"base_model": missing}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="decoder_norm.bias"):
        load_official_checkpoint(mmseq.create_model("point_mae_tiny"), tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_official_checkpoint(mmseq.create_model("point_mae_tiny"), tmp_path / "junk.pth")
