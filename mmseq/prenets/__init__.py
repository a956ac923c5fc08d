"""Pre-nets: one file per input modality. Each maps ``(x, lengths)`` to ``(hidden [B, T, D], lengths)``."""
