"""SpeechT5: six tasks from one shared encoder-decoder, each a choice of pre-nets and post-nets.

| task | encoder pre-net | decoder pre-net | post-net |
|---|---|---|---|
| asr, st | speech (waveform) | text | LM head tied to the text embedding (+ CTC head) |
| tts | text | speech (mel + x-vector) | mel / stop / conv post-net |
| vc, se | speech (waveform) | speech (mel + x-vector) | mel / stop / conv post-net |
| sid | speech (waveform) | -- (``sid_pooling="decoder"``: one zero query) | mean-pooled classifier |

``speech_frontend="logmel"`` swaps the waveform convolutions for a log-mel front-end with Conv2d subsampling
(:mod:`mmseq.prenets.logmel`, CPU-practical; transformers has no equivalent); ``speech_frontend="features"``
reads fixed feature frames ``[B, T, feature_dim]`` instead of waveforms, ``feature_stack`` frames to an encoder
step (:class:`~mmseq.prenets.spectrogram.StackedFramesPrenet`): the upper layers of a model whose lower layers
are a frozen upstream, trained on its cached outputs.

Base variants are post-LN (the published HF checkpoints); large variants are pre-LN (fairseq SpeechT5-large,
which transformers cannot express). Parameter names follow transformers' ``SpeechT5`` modules, so the key map
of :mod:`mmseq.interop.hf_speecht5` only swaps prefixes.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn
from torch import Tensor

from mmseq.models.compose import EncoderDecoderModel, EncoderModel
from mmseq.nn.attention import lengths_to_padding_mask
from mmseq.nn.transformer import LayerSpec, TransformerDecoder, TransformerEncoder
from mmseq.postnets.classifier import ClassifierPostnet
from mmseq.postnets.projection import ProjectionHeads
from mmseq.postnets.speech import SpeechDecoderPostnet
from mmseq.postnets.text import CTCHead, LMHead
from mmseq.prenets.logmel import LogMelPrenet
from mmseq.prenets.spectrogram import StackedFramesPrenet
from mmseq.prenets.speech import SpeechDecoderPrenet, SpeechEncoderPrenet
from mmseq.prenets.text import TokenPrenet
from mmseq.registry import register_model

TASKS = ("asr", "st", "tts", "vc", "se", "sid")
SPEECH_INPUT = ("asr", "st", "vc", "se", "sid")
SPEECH_OUTPUT = ("tts", "vc", "se")
SE_PREDICT = ("target", "mask", "delta")
SE_DECODER_INPUT = ("previous_target", "source")
# Speech encoder pre-nets: the published checkpoints' waveform convolutions, log-mel + Conv2d subsampling, or
# fixed feature frames (a frozen upstream's cached hidden states) stacked ``feature_stack`` to a step.
SPEECH_FRONTENDS = ("waveform", "logmel", "features")

# Token ids of the SpeechT5 character vocabulary (HF spm_char.model).
BOS, PAD, EOS, UNK = 0, 1, 2, 3


class DecoderQueryClassifier(nn.Module):
    """SpeechT5's SID pooling ``decoder``: one zero vector as the decoder's only input step cross-attends to the
    encoder output; the decoder output, mean-pooled over that step, goes through a bias-free linear layer.

    Args:
        decoder: the decoder stack (with cross-attention); its width is the encoder's.
        num_classes: speakers.
    """

    modality = "classes"

    def __init__(self, decoder: TransformerDecoder, num_classes: int):
        super().__init__()
        self.decoder = decoder
        self.output = nn.Linear(decoder.dim, num_classes, bias=False)

    def forward(self, hidden: Tensor, lengths: Tensor) -> Tensor:
        """Encoder output ``hidden [B, T, D]``, valid steps ``lengths [B]`` -> logits ``[B, num_classes]``."""
        query = hidden.new_zeros(hidden.shape[0], 1, self.decoder.dim)
        memory_padding = lengths_to_padding_mask(lengths, hidden.shape[1])
        out = self.decoder(query, None, hidden, memory_padding).last_hidden_state
        return self.output(out.mean(1))


def speecht5(task: str, *, vocab_size: int = 81, dim: int = 768, encoder_layers: int = 12, encoder_heads: int = 12,
             encoder_ffn_dim: int = 3072, decoder_layers: int = 6, decoder_heads: int = 12,
             decoder_ffn_dim: int = 3072, dropout: float = 0.1, attention_dropout: float = 0.1,
             activation_dropout: float = 0.1, positional_dropout: float = 0.1, encoder_layerdrop: float = 0.1,
             decoder_layerdrop: float = 0.1, layer_norm_eps: float = 1e-5, norm_first: bool = False,
             relative_position_distance: int = 160, conv_dims: tuple[int, ...] = (512,) * 7,
             conv_kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2), conv_strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2),
             conv_bias: bool = False, pos_conv_kernel: int = 128, pos_conv_groups: int = 16,
             feature_dropout: float = 0.0, mask_time_prob: float = 0.05, mask_time_length: int = 10,
             mask_time_min_masks: int = 2, max_speech_positions: int = 4000, max_text_positions: int = 450,
             speech_frontend: str = "waveform", logmel_bins: int = 80, logmel_channels: int = 256,
             logmel_utterance_norm: bool = True, feature_dim: int = 0, feature_stack: int = 1,
             scale_embedding: bool = False, num_mel_bins: int = 80, reduction_factor: int = 2,
             speech_prenet_units: int = 256, speech_prenet_layers: int = 2, speech_prenet_dropout: float = 0.5,
             speaker_embedding_dim: int = 512, postnet_layers: int = 5, postnet_units: int = 256,
             postnet_kernel: int = 5, postnet_dropout: float = 0.5, ctc: bool = False,
             num_classes: int = 1251, sid_pooling: str = "encoder", se_predict: str = "target",
             se_decoder_input: str = "previous_target", gradient_checkpointing: bool = False,
             projection_dim: int = 0) -> nn.Module:
    """Compose a SpeechT5 model for ``task`` (one of asr, st, tts, vc, se, sid); defaults are SpeechT5-base.

    Enhancement models (``task="se"``) also say what their frames mean, which generation and the pipeline then
    follow: ``se_predict`` -- the clean frames (``target``), a mask on the noisy frames' mel magnitudes (``mask``:
    the estimate is ``noisy + log10(sigmoid(output))``) or a difference to them (``delta``); ``se_decoder_input``
    -- the decoder reads its previous frames (``previous_target``, autoregressive) or the noisy frames themselves
    (``source``: one pass; required by ``mask`` and ``delta``).

    ``projection_dim > 0`` (ASR / ST models) adds ``projection_heads``, the contrastive heads of COCONUT's losses
    (:class:`~mmseq.postnets.projection.ProjectionHeads`).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if se_predict not in SE_PREDICT or se_decoder_input not in SE_DECODER_INPUT:
        raise ValueError(f"se_predict must be one of {SE_PREDICT} and se_decoder_input one of {SE_DECODER_INPUT}, "
                         f"got {se_predict!r} and {se_decoder_input!r}")
    if (se_predict, se_decoder_input) != ("target", "previous_target") and task != "se":
        raise ValueError(f"se_predict and se_decoder_input are for task 'se', not {task!r}")
    if se_predict != "target" and se_decoder_input != "source":
        raise ValueError(f"se_predict={se_predict!r} modifies the noisy frames the decoder reads, so it needs "
                         "se_decoder_input='source'")
    enc_spec = LayerSpec(dim, encoder_heads, encoder_ffn_dim, dropout, attention_dropout, activation_dropout,
                         norm_first=norm_first, layer_norm_eps=layer_norm_eps)
    dec_spec = LayerSpec(dim, decoder_heads, decoder_ffn_dim, dropout, attention_dropout, activation_dropout,
                         norm_first=norm_first, layer_norm_eps=layer_norm_eps)
    encoder = TransformerEncoder(enc_spec, encoder_layers, layerdrop=encoder_layerdrop,
                                 relative_position_distance=relative_position_distance,
                                 gradient_checkpointing=gradient_checkpointing)
    if speech_frontend not in SPEECH_FRONTENDS:
        raise ValueError(f"speech_frontend must be one of {SPEECH_FRONTENDS}, got {speech_frontend!r}")
    if task in SPEECH_INPUT and speech_frontend == "logmel":
        encoder_prenet: nn.Module = LogMelPrenet(
            dim, logmel_bins, logmel_channels, utterance_norm=logmel_utterance_norm, pos_conv_kernel=pos_conv_kernel,
            pos_conv_groups=pos_conv_groups, feature_dropout=feature_dropout, mask_time_prob=mask_time_prob,
            mask_time_length=mask_time_length, mask_time_min_masks=mask_time_min_masks,
            max_positions=max_speech_positions, padding_idx=PAD)
    elif task in SPEECH_INPUT and speech_frontend == "features":
        if feature_dim < 1:
            raise ValueError("speech_frontend='features' needs feature_dim (the size of the feature frames)")
        encoder_prenet = StackedFramesPrenet(
            feature_dim, dim, feature_stack, pos_conv_kernel, pos_conv_groups, feature_dropout, mask_time_prob,
            mask_time_length, mask_time_min_masks, max_speech_positions, PAD, layer_norm_eps)
    elif task in SPEECH_INPUT:
        encoder_prenet = SpeechEncoderPrenet(
            dim, conv_dims, conv_kernels, conv_strides, conv_bias, pos_conv_kernel, pos_conv_groups,
            layer_norm_eps, feature_dropout, mask_time_prob, mask_time_length, mask_time_min_masks,
            max_speech_positions, PAD)
    else:
        encoder_prenet = TokenPrenet(vocab_size, dim, PAD, positions="scaled", dropout=0.0,
                                     max_positions=max_text_positions)
        encoder_prenet.encode_positions.dropout.p = positional_dropout  # SpeechT5 drops out after the positions
    if task == "sid":
        if sid_pooling not in ("encoder", "decoder"):
            raise ValueError(f"sid_pooling must be 'encoder' or 'decoder', got {sid_pooling!r}")
        head: nn.Module = ClassifierPostnet(dim, num_classes) if sid_pooling == "encoder" else DecoderQueryClassifier(
            TransformerDecoder(dec_spec, decoder_layers, layerdrop=decoder_layerdrop,
                               gradient_checkpointing=gradient_checkpointing), num_classes)
        model = EncoderModel(encoder_prenet, encoder, head)
        model.task = task
        return model

    decoder = TransformerDecoder(dec_spec, decoder_layers, layerdrop=decoder_layerdrop,
                                 gradient_checkpointing=gradient_checkpointing)
    if task in SPEECH_OUTPUT:
        decoder_prenet: nn.Module = SpeechDecoderPrenet(num_mel_bins, dim, speech_prenet_units, speech_prenet_layers,
                                                        speech_prenet_dropout, speaker_embedding_dim,
                                                        positional_dropout, max_speech_positions)
        postnet: nn.Module = SpeechDecoderPostnet(dim, num_mel_bins, reduction_factor, postnet_layers, postnet_units,
                                                  postnet_kernel, postnet_dropout)
    else:
        decoder_prenet = TokenPrenet(vocab_size, dim, PAD, positions="sinusoidal", scale_embedding=scale_embedding,
                                     dropout=positional_dropout, max_positions=max_text_positions)
        postnet = LMHead(dim, vocab_size, tie_to=decoder_prenet.embed_tokens)
    ctc_head = CTCHead(dim, vocab_size) if ctc and task in ("asr", "st") else None
    model = EncoderDecoderModel(encoder_prenet, encoder, decoder_prenet, decoder, postnet, encoder_postnet=ctc_head)
    model.task = task
    if projection_dim:
        if task not in ("asr", "st"):
            raise ValueError(f"projection_dim is for the text-output tasks (asr, st), not {task!r}")
        model.projection_heads = ProjectionHeads(dim, projection_dim)
    if task == "se":
        model.se_predict, model.se_decoder_input = se_predict, se_decoder_input
    return model


_TINY: dict[str, Any] = dict(
    vocab_size=81, dim=32, encoder_layers=2, encoder_heads=4, encoder_ffn_dim=64, decoder_layers=2, decoder_heads=4,
    decoder_ffn_dim=64, conv_dims=(32, 32, 32), conv_kernels=(10, 3, 3), conv_strides=(5, 2, 2), pos_conv_kernel=16,
    pos_conv_groups=2, relative_position_distance=16, speech_prenet_units=16, speaker_embedding_dim=8,
    postnet_units=16, num_mel_bins=16, num_classes=5,
)
_LARGE: dict[str, Any] = dict(dim=1024, encoder_layers=24, encoder_heads=16, encoder_ffn_dim=4096, decoder_layers=6,
                              decoder_heads=16, decoder_ffn_dim=4096, norm_first=True)


def _builder(task: str, size_name: str, size: dict[str, Any]):
    """A registered builder for one task and size; its overrides are any argument of :func:`speecht5`."""

    def builder(**overrides: Any) -> nn.Module:
        return speecht5(task, **{**size, **overrides})

    builder.__name__ = f"speecht5_{task}_{size_name}"
    builder.__doc__ = f"SpeechT5-{size_name} for {task}."
    builder.__signature__ = _signature_with_defaults(size)  # type: ignore[attr-defined]
    return builder


def _signature_with_defaults(size: dict[str, Any]):
    import inspect

    params = [p for p in inspect.signature(speecht5).parameters.values() if p.name != "task"]
    return inspect.Signature([p.replace(default=size.get(p.name, p.default)) for p in params])


for _task in TASKS:
    for _size_name, _size in (("base", {}), ("large", _LARGE), ("tiny", _TINY)):
        register_model(_builder(_task, _size_name, _size))
