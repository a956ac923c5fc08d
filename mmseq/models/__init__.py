"""Model families. Importing this package registers every builder in it."""

from mmseq.models import generic  # noqa: F401
