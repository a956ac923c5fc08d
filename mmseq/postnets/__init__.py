"""Post-nets: map trunk states ``(hidden [B, T, D], lengths)`` back to a modality or to logits."""
