"""SpeechT5 tasks: ASR, ST, TTS, VC, SE and SID on speech manifests (one module per group; importing this package
registers them)."""

from mmseq.tasks.speecht5 import data, sid, speech, text  # noqa: F401
from mmseq.tasks.speecht5 import pretrain  # noqa: F401  (its fairseq checkpoint format registers too)
