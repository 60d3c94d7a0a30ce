"""Training: settings, data sampling, losses, the two-stage trainer, its export and its multi-process launch.

`train(TrainJob(...))` is the one entry point (scisr.train.run; the job: scisr.train.job).
"""

from scisr.train.job import TrainJob
from scisr.train.run import train
from scisr.train.settings import Settings

__all__ = ["Settings", "TrainJob", "train"]
