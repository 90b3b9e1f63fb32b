"""Training and evaluation loops, checkpoints."""
