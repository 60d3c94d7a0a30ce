"""Cross-validation folds (study.folds): which trained instance of a model scores which fold's test set.

A model trained on a cross-validated dataset has one instance per fold (fold i learnt from every fold but i); a
model trained on a single holdout (the generic model's photographs) or imported has one. The test images of fold
j of any dataset are scored by instance `instance_fold(j, n)` of a model with n instances: instance j when the
model was cross-validated on that dataset (so it never saw those images), the one instance otherwise; on another
cross-validated dataset, instance j too (it never saw that dataset at all). Pure Python: the workflow's parse
step and the report both use it.
"""

from __future__ import annotations


def instance_fold(fold: int, instances: int) -> int:
    """The instance (1..`instances`) of a model that scores test fold `fold` (1-based)."""
    if fold < 1 or instances < 1:
        raise ValueError(f"folds and instances count from 1, got fold {fold} of a model with {instances} instance(s)")
    return (fold - 1) % instances + 1
