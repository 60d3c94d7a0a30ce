"""Training: settings, data sampling, losses, the two-stage trainer, its export and its multi-process launch.

`train(TrainJob(...))` is the one entry point (scisr.train.run).
"""

from scisr.train.run import TrainJob, train

__all__ = ["TrainJob", "train"]
