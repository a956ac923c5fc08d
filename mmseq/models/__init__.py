"""Model families. Importing this package registers every builder in it."""

from mmseq.models import generic, speecht5  # noqa: F401
from mmseq.vocoders import hifigan  # noqa: F401
from mmseq.models import tera  # noqa: F401
