"""Continual (class-incremental) learning: streams over a manifest's labels, rehearsal memory, COCONUT's
contrastive losses and the metrics of an accuracy matrix (Avg Acc, Last Acc, backward transfer, forgetting)."""

from mmseq.nn.contrastive import multimodal_contrastive_loss, nspt_loss, supcon_loss
from mmseq.continual.memory import RehearsalMemory, rank_closest_to_mean, rank_herding
from mmseq.continual.metrics import (AccuracyMatrix, average_incremental_accuracy, backward_transfer, forgetting,
                                     stream_summary)
from mmseq.continual.scenario import (FSC10_CLASS_ORDER, PRESETS, ClassIncremental, class_ids, fsc_class_keys,
                                      utterance_labels)

__all__ = [
    "AccuracyMatrix", "ClassIncremental", "FSC10_CLASS_ORDER", "PRESETS", "RehearsalMemory",
    "average_incremental_accuracy", "backward_transfer", "class_ids", "forgetting", "fsc_class_keys",
    "multimodal_contrastive_loss", "nspt_loss", "supcon_loss",
    "rank_closest_to_mean", "rank_herding", "stream_summary", "utterance_labels",
]
