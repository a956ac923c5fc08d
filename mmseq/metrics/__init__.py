"""Task metrics as thin wrappers over well-kept libraries (jiwer, sacrebleu, torchmetrics, pesq, pystoi,
mel-cepstral-distance).

* :mod:`~mmseq.metrics.text` -- WER / CER with summable edit counts, corpus BLEU and chrF with their signatures.
* :mod:`~mmseq.metrics.speech` -- SI-SDR (+ improvement over a mixture), wide-band PESQ, STOI, MCD with DTW.
* :mod:`~mmseq.metrics.classification` -- top-1 accuracy as summable counts.
* :mod:`~mmseq.metrics.segmentation` -- IoU, mIoU and pixel accuracy from one summable confusion matrix.
* :mod:`~mmseq.metrics.captioning` -- CIDEr-D and BLEU-4 (pycocoevalcap), CLIPScore (open_clip), VQAv2 accuracy,
  synthetic-caption attributes.

Arguments are ``(estimate/hypotheses, reference/references)`` everywhere; bad input raises
:class:`~mmseq.errors.InputError`.
"""

from mmseq.metrics.captioning import (CLIPScorer, attribute_accuracy, bleu4, caption_scores, cider_d, clip_score,
                                      ptb_tokenize, vqa_accuracy)
from mmseq.metrics.classification import Accuracy, accuracy
from mmseq.metrics.segmentation import ConfusionMatrix, confusion_matrix
from mmseq.metrics.speech import (MelCepstralDistortion, mel_cepstral_distortion, pesq_wb, si_sdr,
                                  si_sdr_improvement, stoi)
from mmseq.metrics.text import CorpusScore, ErrorRate, bleu, character_error_rate, chrf, word_error_rate

__all__ = [
    "Accuracy", "ConfusionMatrix", "CorpusScore", "ErrorRate", "MelCepstralDistortion", "accuracy", "bleu", "character_error_rate",
    "chrf", "confusion_matrix", "mel_cepstral_distortion", "pesq_wb", "si_sdr", "si_sdr_improvement", "stoi", "word_error_rate",
    "CLIPScorer", "attribute_accuracy", "bleu4", "caption_scores", "cider_d", "clip_score", "ptb_tokenize", "vqa_accuracy",
]
