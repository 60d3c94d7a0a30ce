"""The training settings: a typed view of a settings dict already validated against config/train.schema.yaml.

The schema is the one place defaults and value ranges live: the train rule validates the merged `train` block
of the config with it (filling in defaults), adds `seed` and `scale`, and passes the result. This module has no
defaults of its own: every key below is required, and a missing one is an error naming it. It converts types,
checks names against the library's registries, and applies the cross-field rules of `scisr.checks`.

Keys (see config/train.schema.yaml for their meaning and defaults):

    seed, scale                     int    the study's seed and upscaling factor (from the top-level config)
    generator                       dict   {"arch": <name in scisr.models.GENERATORS>, **builder arguments};
                                           in_channels, out_channels and scale are filled in from data and scale
    discriminator                   dict   {"arch": <name in scisr.models.DISCRIMINATORS>, **builder arguments}
    batch_size, gpus                int    the global batch, split evenly over `gpus` DistributedDataParallel
                                           processes (batch_size / gpus patches each, streams seed + rank)
    patch_size                      int    HR patch side, a multiple of scale (clamped to the smallest image)
    pixel_loss                      str    name in scisr.train.losses.PIXEL_LOSSES
    pixel                           dict   stage 1: iterations, lr, milestones, gamma (Adam, multistep decay)
    gan                             dict   stage 2: iterations (0 skips it), lr, adv_weight, pixel_weight,
                                           milestones, gamma, loss (name in losses.ADVERSARIAL_LOSSES)
    perceptual                      dict   weight (0 = off), weights_file, sha256, layer (VGG19 convB_N)
    ema                             float  decay of the exported weight average; 0 = off
    grad_clip                       float  gradient-norm clip of each network, or null (0 counts as null)
    amp                             str    "auto" (bf16 autocast where the GPU or CPU has bf16: scisr.train.speed),
                                           "bf16" (always) or "off"; YAML's unquoted `off` (read as false) is "off"
    val_every, checkpoint_every     int    in global iterations
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

from scisr.checks import total_iterations, train_problems
from scisr.models.vgg import LAYERS
from scisr.train import losses

AMP_MODES = ("auto", "bf16", "off")
STAGE_KEYS = ("iterations", "lr", "milestones", "gamma")
GAN_KEYS = (*STAGE_KEYS, "adv_weight", "pixel_weight", "loss")
PERCEPTUAL_KEYS = ("weight", "weights_file", "sha256", "layer")
KEYS = (
    "seed",
    "scale",
    "generator",
    "discriminator",
    "batch_size",
    "gpus",
    "patch_size",
    "pixel_loss",
    "pixel",
    "gan",
    "perceptual",
    "ema",
    "grad_clip",
    "amp",
    "val_every",
    "checkpoint_every",
)


def _require(mapping: dict, key: str, where: str = ""):
    """mapping[key], or a KeyError naming the full key."""
    try:
        return mapping[key]
    except KeyError:
        raise KeyError(
            f"training settings: missing key '{where}{key}' (config/train.schema.yaml gives its "
            "default: validate the settings against it)"
        ) from None


def _known(value: str, table, key: str) -> str:
    if value not in table:
        raise ValueError(f"training settings: {key} is {value!r}; known: {', '.join(sorted(table))}")
    return value


def _only(mapping: dict, keys: tuple[str, ...], where: str) -> None:
    """Refuse keys the schema does not know (a typo would otherwise be silently ignored)."""
    unknown = sorted(set(mapping) - set(keys))
    if unknown:
        raise ValueError(f"training settings: unknown key(s) {', '.join(where + k for k in unknown)}")


@dataclass(frozen=True)
class StageSettings:
    """One training stage's schedule and loss weights."""

    name: str
    iterations: int
    lr: float
    milestones: list[int]
    gamma: float
    pixel_weight: float
    adv_weight: float
    adversarial_loss: str


@dataclass(frozen=True)
class PerceptualSettings:
    """The GAN stage's VGG19 perceptual loss; weight 0 means it is not used (nor its file read)."""

    weight: float
    weights_file: str | None
    sha256: str | None
    layer: str

    @classmethod
    def from_dict(cls, d: dict) -> PerceptualSettings:
        """Read the `perceptual` block (every key required)."""
        _only(d, PERCEPTUAL_KEYS, "perceptual.")
        weights_file, sha256 = (_require(d, k, "perceptual.") for k in ("weights_file", "sha256"))
        parsed = cls(
            weight=float(_require(d, "weight", "perceptual.") or 0.0),
            weights_file=None if weights_file in (None, "") else str(weights_file),
            sha256=None if sha256 in (None, "") else str(sha256).strip().lower(),
            layer=_known(str(_require(d, "layer", "perceptual.")), LAYERS, "perceptual.layer"),
        )
        if parsed.weight < 0 or not math.isfinite(parsed.weight):
            raise ValueError(f"training settings: perceptual.weight must be >= 0, got {parsed.weight}")
        return parsed


def _stage(name: str, d: dict) -> StageSettings:
    where = f"{name}."
    gan = name == "gan"
    _only(d, GAN_KEYS if gan else STAGE_KEYS, where)
    return StageSettings(
        name=name,
        iterations=int(_require(d, "iterations", where)),
        lr=float(_require(d, "lr", where)),
        milestones=[int(m) for m in _require(d, "milestones", where)],
        gamma=float(_require(d, "gamma", where)),
        pixel_weight=float(_require(d, "pixel_weight", where)) if gan else 1.0,
        adv_weight=float(_require(d, "adv_weight", where)) if gan else 0.0,
        adversarial_loss=_known(str(_require(d, "loss", where)), losses.ADVERSARIAL_LOSSES, "gan.loss") if gan else "",
    )


@dataclass(frozen=True)
class Settings:
    """The training settings dict, typed; see the module docstring."""

    seed: int
    scale: int
    generator: dict
    discriminator: dict
    batch_size: int
    gpus: int
    patch_size: int
    pixel_loss: str
    stages: list[StageSettings]
    perceptual: PerceptualSettings
    ema: float
    grad_clip: float | None
    amp: str
    val_every: int
    checkpoint_every: int
    source: dict = field(repr=False, compare=False)  # the validated dict these were read from (see to_dict)

    @classmethod
    def from_dict(cls, settings: dict) -> Settings:
        """Read a validated settings dict, naming any missing key or bad value."""
        _only(settings, KEYS, "")
        amp = _require(settings, "amp")
        grad_clip = _require(settings, "grad_clip")
        parsed = cls(
            seed=int(_require(settings, "seed")),
            scale=int(_require(settings, "scale")),
            generator=dict(_require(settings, "generator")),
            discriminator=dict(_require(settings, "discriminator")),
            batch_size=int(_require(settings, "batch_size")),
            gpus=int(_require(settings, "gpus")),
            patch_size=int(_require(settings, "patch_size")),
            pixel_loss=_known(str(_require(settings, "pixel_loss")), losses.PIXEL_LOSSES, "pixel_loss"),
            stages=[_stage("pixel", _require(settings, "pixel")), _stage("gan", _require(settings, "gan"))],
            perceptual=PerceptualSettings.from_dict(_require(settings, "perceptual")),
            ema=float(_require(settings, "ema") or 0.0),
            grad_clip=float(grad_clip) if grad_clip else None,
            amp=_known("off" if amp is False else str(amp), AMP_MODES, "amp"),
            val_every=int(_require(settings, "val_every")),
            checkpoint_every=int(_require(settings, "checkpoint_every")),
            source=copy.deepcopy(dict(settings)),
        )
        _require(parsed.generator, "arch", "generator.")
        _require(parsed.discriminator, "arch", "discriminator.")
        if not 0.0 <= parsed.ema < 1.0:
            raise ValueError(f"training settings: ema must be in [0, 1) (0 = off), got {parsed.ema}")
        if parsed.grad_clip is not None and not parsed.grad_clip > 0:
            raise ValueError(f"training settings: grad_clip must be > 0 (null: no clipping), got {parsed.grad_clip}")
        if parsed.total_iterations <= 0:
            raise ValueError("training settings: pixel.iterations + gan.iterations must be positive")
        if parsed.gpus < 1:
            raise ValueError(f"training settings: gpus must be >= 1, got {parsed.gpus}")
        problems = train_problems(settings, parsed.scale)
        if problems:
            raise ValueError("training settings: " + "; ".join(problems))
        return parsed

    def to_dict(self) -> dict:
        """The validated settings dict these were read from (a copy): what the model card records, the checkpoint
        fingerprint hashes and a job hands to its torchrun workers; `from_dict(to_dict())` reads it back."""
        return copy.deepcopy(self.source)

    @property
    def total_iterations(self) -> int:
        """The schedule's length, both stages (scisr.checks.total_iterations, the one definition)."""
        return total_iterations(self.source)

    @property
    def uses_perceptual(self) -> bool:
        """Whether training reads the VGG19 weights: a perceptual weight and a GAN stage."""
        return self.perceptual.weight > 0 and self.stages[1].iterations > 0


def check_settings(settings: dict) -> None:
    """Raise KeyError/ValueError naming the key when `settings` cannot train; builds nothing, reads no file."""
    Settings.from_dict(settings)
