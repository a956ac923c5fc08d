"""Modality-agnostic building blocks: attention with a KV cache, transformer stacks, positional encodings and
the composition of pre-nets, trunk and post-nets."""

from mmseq.nn.attention import KVCache, MultiheadAttention
from mmseq.nn.backbone import EncoderDecoderModel, EncoderModel, Features, lengths_to_padding_mask
from mmseq.nn.transformer import (DecoderCache, LayerSpec, TransformerDecoder, TransformerDecoderLayer,
                                  TransformerEncoder, TransformerEncoderLayer)

__all__ = ["DecoderCache", "EncoderDecoderModel", "EncoderModel", "Features", "KVCache", "LayerSpec",
           "MultiheadAttention", "TransformerDecoder", "TransformerDecoderLayer", "TransformerEncoder",
           "TransformerEncoderLayer", "lengths_to_padding_mask"]
