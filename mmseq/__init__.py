"""mmseq: multimodal sequence models built from pre-nets, a shared encoder-decoder trunk and post-nets."""

from mmseq.checkpoint import load, save_pretrained
from mmseq.inference import pipeline
from mmseq.registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "load", "pipeline", "register_model", "save_pretrained", "__version__"]
