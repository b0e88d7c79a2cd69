"""Training: one trainer for every model, checkpoints, and run directories."""
