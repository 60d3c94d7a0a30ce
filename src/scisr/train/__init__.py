"""Training: data sampling, losses, checkpoints and the two-stage SRGAN loop."""

from scisr.train.loop import train_model

__all__ = ["train_model"]
