"""Generic compositions on the shared trunk: a token-to-token transformer, an image-patch classifier, a point-cloud
classifier, and decoder-only language models (plain, and with an image prefix). They prove that the pre-net /
trunk / post-net contract does not depend on the modality or the model kind, and the tiny ones drive the quick
start and tests.
"""

from __future__ import annotations

from mmseq.models.compose import DecoderOnlyModel, EncoderDecoderModel, EncoderModel
from mmseq.nn.transformer import LayerSpec, TransformerDecoder, TransformerEncoder
from mmseq.postnets.classifier import ClassifierPostnet
from mmseq.postnets.text import LMHead
from mmseq.prenets.image import ImagePatchPrenet
from mmseq.prenets.points import PointGroupPrenet
from mmseq.prenets.text import TokenPrenet
from mmseq.registry import register_model


def _encoder(spec: LayerSpec, layers: int, layerdrop: float, gradient_checkpointing: bool,
             relative_position_distance: int | None = None) -> TransformerEncoder:
    return TransformerEncoder(spec, layers, layerdrop=layerdrop, gradient_checkpointing=gradient_checkpointing,
                              relative_position_distance=relative_position_distance)


def text_transformer(vocab_size: int, dim: int, heads: int, ffn_dim: int, encoder_layers: int,
                     decoder_layers: int, dropout: float, layerdrop: float, norm_first: bool,
                     relative_position_distance: int | None, gradient_checkpointing: bool,
                     padding_idx: int = 1) -> EncoderDecoderModel:
    """Token-to-token encoder-decoder with a tied LM head (encoder and decoder share no embedding)."""
    spec = LayerSpec(dim, heads, ffn_dim, dropout, dropout, dropout, norm_first=norm_first)
    decoder_prenet = TokenPrenet(vocab_size, dim, padding_idx, positions="sinusoidal", scale_embedding=True,
                                 dropout=dropout)
    return EncoderDecoderModel(
        encoder_prenet=TokenPrenet(vocab_size, dim, padding_idx, positions="scaled", dropout=dropout),
        encoder=_encoder(spec, encoder_layers, layerdrop, gradient_checkpointing, relative_position_distance),
        decoder_prenet=decoder_prenet,
        decoder=TransformerDecoder(spec, decoder_layers, layerdrop=layerdrop,
                                   gradient_checkpointing=gradient_checkpointing),
        decoder_postnet=LMHead(dim, vocab_size, tie_to=decoder_prenet.embed_tokens),
    )


@register_model
def text_transformer_tiny(vocab_size: int = 32, dim: int = 32, heads: int = 4, ffn_dim: int = 64,
                          encoder_layers: int = 2, decoder_layers: int = 2, dropout: float = 0.1,
                          layerdrop: float = 0.0, relative_position_distance: int = 16,
                          gradient_checkpointing: bool = False) -> EncoderDecoderModel:
    """Post-LN (SpeechT5-base layout) with relative position bias in the encoder."""
    return text_transformer(vocab_size, dim, heads, ffn_dim, encoder_layers, decoder_layers, dropout, layerdrop,
                            False, relative_position_distance, gradient_checkpointing)


@register_model
def text_transformer_tiny_preln(vocab_size: int = 32, dim: int = 32, heads: int = 4, ffn_dim: int = 64,
                                encoder_layers: int = 2, decoder_layers: int = 2, dropout: float = 0.1,
                                layerdrop: float = 0.0, gradient_checkpointing: bool = False) -> EncoderDecoderModel:
    """Pre-LN layout (SpeechT5-large and modern models)."""
    return text_transformer(vocab_size, dim, heads, ffn_dim, encoder_layers, decoder_layers, dropout, layerdrop,
                            True, None, gradient_checkpointing)


@register_model
def image_classifier_tiny(image_size: int = 32, patch_size: int = 8, in_channels: int = 3, num_classes: int = 10,
                          dim: int = 32, heads: int = 4, ffn_dim: int = 64, layers: int = 2,
                          dropout: float = 0.0, layerdrop: float = 0.0,
                          gradient_checkpointing: bool = False) -> EncoderModel:
    spec = LayerSpec(dim, heads, ffn_dim, dropout, dropout, dropout, norm_first=True, layer_norm_eps=1e-6)
    return EncoderModel(ImagePatchPrenet(image_size, patch_size, in_channels, dim),
                        _encoder(spec, layers, layerdrop, gradient_checkpointing),
                        ClassifierPostnet(dim, num_classes))


@register_model
def point_classifier_tiny(num_groups: int = 16, group_size: int = 8, num_classes: int = 10, dim: int = 32,
                          heads: int = 4, ffn_dim: int = 64, layers: int = 2, dropout: float = 0.0,
                          layerdrop: float = 0.0, gradient_checkpointing: bool = False) -> EncoderModel:
    spec = LayerSpec(dim, heads, ffn_dim, dropout, dropout, dropout, norm_first=True, layer_norm_eps=1e-6)
    return EncoderModel(PointGroupPrenet(num_groups, group_size, dim),
                        _encoder(spec, layers, layerdrop, gradient_checkpointing),
                        ClassifierPostnet(dim, num_classes))


def causal_lm(vocab_size: int, dim: int, heads: int, ffn_dim: int, layers: int, dropout: float, norm_first: bool,
              prefix_prenet=None, padding_idx: int = 1, max_positions: int = 1024) -> DecoderOnlyModel:
    """A decoder-only LM with a tied LM head, optionally after a prefix pre-net."""
    spec = LayerSpec(dim, heads, ffn_dim, dropout, dropout, dropout, norm_first=norm_first)
    token_prenet = TokenPrenet(vocab_size, dim, padding_idx, positions="sinusoidal", scale_embedding=True,
                               dropout=dropout, max_positions=max_positions)
    return DecoderOnlyModel(token_prenet, TransformerDecoder(spec, layers, cross_attention=False),
                            LMHead(dim, vocab_size, tie_to=token_prenet.embed_tokens), prefix_prenet=prefix_prenet)


@register_model
def text_lm_tiny(vocab_size: int = 32, dim: int = 32, heads: int = 4, ffn_dim: int = 64, layers: int = 2,
                 dropout: float = 0.1, norm_first: bool = True) -> DecoderOnlyModel:
    """A tiny pre-LN decoder-only language model."""
    return causal_lm(vocab_size, dim, heads, ffn_dim, layers, dropout, norm_first)


@register_model
def image_prefix_lm_tiny(vocab_size: int = 32, image_size: int = 16, patch_size: int = 8, in_channels: int = 3,
                         dim: int = 32, heads: int = 4, ffn_dim: int = 64, layers: int = 2, dropout: float = 0.1,
                         norm_first: bool = True) -> DecoderOnlyModel:
    """A tiny decoder-only LM whose tokens follow an image's patch embeddings (the shape of LiMBeR, all trained)."""
    prefix = ImagePatchPrenet(image_size, patch_size, in_channels, dim)
    return causal_lm(vocab_size, dim, heads, ffn_dim, layers, dropout, norm_first, prefix_prenet=prefix)
