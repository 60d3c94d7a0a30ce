"""What a finished training run leaves: generator.pt, history.tsv and the model card, each written atomically."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pandas as pd
import torch
import torch.distributed as dist

from scisr.card import ModelCard
from scisr.io.files import atomic_path
from scisr.models import count_parameters
from scisr.train.speed import format_name
from scisr.train.start import InitWeights, exported, exported_weights
from scisr.train.trainer import Trainer

HISTORY_COLUMNS = [
    "iteration",
    "stage",
    "loss_pixel",
    "loss_adv",
    "loss_perceptual",
    "loss_d",
    "val_rmse",
    "val_psnr",
    "val_ssim",
    "lr",
    "seconds",
]


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU model (from /proc/cpuinfo where there is one)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def training_card(
    trainer: Trainer,
    *,
    dataset: str,
    normalization: dict,
    threads: int,
    train_hr_sha256: str,
    init: InitWeights | None = None,
    fold: int = 1,
    folds: int = 1,
) -> ModelCard:
    """The model card of a finished run: what it is, what it learnt from (`fold` of `folds` of `dataset`), what it
    started from (`init`, fine-tuning) and what it cost per stage."""
    cfg, p = trainer.cfg, trainer.progress
    last = p.history[-1]
    perceptual = trainer.perceptual
    args = trainer.generator_args
    return ModelCard(
        name=trainer.name,
        source="trained",
        arch=cfg.generator["arch"],
        args=dict(args),
        scale=cfg.scale,
        channels=int(trainer.data_channels),  # args' in_channels differ when a ChannelAdapter is used
        parameters=count_parameters(exported(trainer.eval_model)),
        iterations={s.name: s.iterations for s in cfg.stages},
        wall_seconds={s.name: round(p.stage_seconds.get(s.name, 0.0), 3) for s in cfg.stages},
        device=str(trainer.device),
        device_name=device_name(trainer.device),
        threads=threads,
        gpus=trainer.world_size,
        training_data={
            "dataset": dataset,
            "fold": int(fold),
            "folds": int(folds),
            "train_images": len(trainer.train.names),
            "val_images": len(trainer.val.names),
            "train_hr_sha256": train_hr_sha256,
        },
        normalization=dict(normalization),
        init_from=init.name if init is not None else None,
        training={
            "seed": cfg.seed,
            "init": {
                "model": init.name,
                "source": init.card.source,
                "generator_sha256": init.sha256,
                "fold": init.card.training_data.get("fold"),
            }
            if init is not None
            else None,
            "ema": cfg.ema,
            "exported_weights": "ema" if trainer.ema is not None else "last",
            "gan_loss": cfg.stages[1].adversarial_loss,
            "perceptual": {
                "weight": cfg.perceptual.weight if perceptual is not None else 0.0,
                "layer": cfg.perceptual.layer if perceptual is not None else None,
                "weights_file": cfg.perceptual.weights_file if perceptual is not None else None,
                "sha256": perceptual.sha256 if perceptual is not None else None,
            },
            "grad_clip": cfg.grad_clip,
            "precision": trainer.precision,
            "precision_reason": trainer.precision_reason,
            "memory_format": format_name(trainer.memory_format),  # the generator's (scisr.train.speed)
            "distributed": (
                {
                    "world_size": trainer.world_size,
                    "backend": dist.get_backend(),
                    "batch_per_process": trainer.local_batch,
                    "global_batch": cfg.batch_size,
                }
                if trainer.world_size > 1
                else None
            ),
            "final_validation": {"val_rmse": float(last["val_rmse"]), "val_psnr": float(last["val_psnr"])},
            "torch_version": str(torch.__version__),
            "settings": json.loads(json.dumps(cfg.to_dict())),  # plain types for YAML
        },
    )


def write_outputs(
    trainer: Trainer,
    card: ModelCard,
    *,
    generator: str | os.PathLike,
    history: str | os.PathLike,
    card_path: str | os.PathLike,
) -> None:
    """generator.pt (EMA weights when enabled; a state dict of the network, without a channel adapter),
    history.tsv and model.yaml at the given paths."""
    weights = exported_weights(trainer.eval_model)  # the network itself, without a ChannelAdapter around it
    with atomic_path(Path(generator)) as tmp:
        torch.save(weights, tmp)
    frame = pd.DataFrame(trainer.progress.history, columns=HISTORY_COLUMNS)
    with atomic_path(Path(history)) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, na_rep="NaN")
    card.write(card_path)
