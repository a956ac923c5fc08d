"""mmseq: multimodal sequence models built from pre-nets, a shared encoder-decoder trunk and post-nets.

Importing the package registers every model family, checkpoint format and task; the layers and contracts are in
``docs/architecture.md``.
"""

from mmseq import interop, models, tasks, vocoders  # noqa: F401  (registers families, formats and tasks)
from mmseq.checkpoint import load, save_pretrained
from mmseq.generation import generate, generate_speech
from mmseq.inference import pipeline
from mmseq.registry import create_model, list_models, register_model

__version__ = "0.1.0"
__all__ = ["create_model", "generate", "generate_speech", "list_models", "load", "pipeline", "register_model",
           "save_pretrained", "__version__"]
