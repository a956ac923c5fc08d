"""Modality-agnostic building blocks: attention with a KV cache, transformer stacks and their one-step decoding
path, positional encodings, time-major convolutions, dropout, and the weighted sum of layers."""

from mmseq.nn.attention import KVCache, MultiheadAttention, lengths_to_padding_mask, padding_mask_or_none
from mmseq.nn.incremental import StepDecoder, is_plain
from mmseq.nn.layer_sum import WeightedLayerSum
from mmseq.nn.transformer import (DecoderCache, LayerSpec, TransformerDecoder, TransformerDecoderLayer,
                                  TransformerEncoder, TransformerEncoderLayer)

__all__ = ["DecoderCache", "KVCache", "LayerSpec", "MultiheadAttention", "StepDecoder", "TransformerDecoder",
           "TransformerDecoderLayer", "TransformerEncoder", "TransformerEncoderLayer", "WeightedLayerSum",
           "is_plain", "lengths_to_padding_mask", "padding_mask_or_none"]
