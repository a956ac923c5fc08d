"""Downstream use of pretrained encoders through ``forward_features``: a learnable weighted sum of layers,
frame-level and utterance-level heads, and the frozen/fine-tuned upstream wrapper that joins them."""

from mmseq.downstream.heads import (FeatureUpstream, FrameClassifier, UpstreamClassifier, WeightedLayerSum,
                                    UtteranceClassifier)

__all__ = ["FeatureUpstream", "FrameClassifier", "UpstreamClassifier", "UtteranceClassifier", "WeightedLayerSum"]
