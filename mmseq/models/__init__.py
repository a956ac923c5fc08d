"""Model families, one file each, and the model kinds they compose (:mod:`mmseq.models.compose`).

Importing this package registers every builder in it (``import mmseq`` does).
"""

from mmseq.models import adapnet, downstream, generic, limber, speecht5, ssma, tera, xvector  # noqa: F401
from mmseq.models import i2p_mae, point_mae  # noqa: F401
from mmseq.models import wav2vec2  # noqa: F401
from mmseq.models import speecht5_pretrain  # noqa: F401
from mmseq.models.compose import DecoderOnlyModel, EncoderDecoderModel, EncoderModel, Seq2SeqOutput

__all__ = ["DecoderOnlyModel", "EncoderDecoderModel", "EncoderModel", "Seq2SeqOutput"]
