"""Task metrics as thin wrappers over well-kept libraries (jiwer, sacrebleu, torchmetrics, pesq, pystoi)."""
