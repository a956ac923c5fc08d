"""Converters to and from other projects' checkpoints. Importing this package registers their formats with
:func:`mmseq.load` (``mmseq.checkpoint.load`` imports it on first use)."""

from mmseq.interop import fairseq_speecht5, hf_speecht5, hf_wav2vec2, s3prl, speechbrain  # noqa: F401
