"""Training: the loop, checkpoints, curves and multi-process (DDP) support."""
