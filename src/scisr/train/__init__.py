"""Training: data sampling, losses, checkpoints, the two-stage SRGAN loop and its multi-process launch."""

from scisr.train.loop import run_training, train_model

__all__ = ["run_training", "train_model"]
