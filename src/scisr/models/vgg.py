"""VGG19 convolutional features (Simonyan & Zisserman 2015) for perceptual losses, with torchvision's names.

The parameter names are those of torchvision's ``vgg19().state_dict()`` (``features.0.weight`` ...
``features.34.bias``), so a torchvision VGG19 weights file loads directly; its classifier is not built and
its classifier keys are ignored. Weights come only from a file the user names: nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from scisr.io.hashing import file_sha256

# torchvision's configuration "E": channels of each 3x3 conv, "M" = 2x2 max pooling
VGG19_CONFIG: tuple[int | str, ...] = (
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
    "M",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _conv_indices() -> dict[str, int]:
    """'convB_N' -> index of that conv in `features` (conv5_4 -> 34), following VGG19_CONFIG."""
    names, index, block, conv = {}, 0, 1, 0
    for item in VGG19_CONFIG:
        if item == "M":
            index, block, conv = index + 1, block + 1, 0
        else:
            conv += 1
            names[f"conv{block}_{conv}"] = index
            index += 2  # the conv and its ReLU
    return names


LAYERS: dict[str, int] = _conv_indices()


def _features(last: int) -> nn.Sequential:
    """torchvision's vgg19 `features` up to and including module index `last`."""
    layers: list[nn.Module] = []
    in_channels = 3
    for item in VGG19_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, int(item), kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = int(item)
    return nn.Sequential(*layers[: last + 1])


class VGG19Features(nn.Module):
    """VGG19 features of a [0, 1] image at one conv layer, before its ReLU (ESRGAN's choice).

    A 1-channel input is repeated to 3 channels; the input is normalised with the ImageNet mean and
    standard deviation that torchvision's weights were trained with. Frozen: no gradients to its
    weights, always in eval mode (VGG19 features have no dropout or batch norm, so the mode only
    documents intent).
    """

    def __init__(self, layer: str = "conv5_4") -> None:
        super().__init__()
        if layer not in LAYERS:
            raise ValueError(f"unknown VGG19 layer {layer!r}; known: {', '.join(LAYERS)}")
        self.layer = layer
        self.features = _features(LAYERS[layer])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        """Stay in eval mode whatever is asked: the network is a fixed feature extractor."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise ValueError(f"VGG19 features need 1- or 3-channel images, got {x.shape[1]} channels")
        return self.features((x.float() - self.mean) / self.std)  # normalised in fp32 (autocast or not)


def load_vgg19_features(
    weights_file: str | os.PathLike,
    layer: str = "conv5_4",
    sha256: str | None = None,
) -> tuple[VGG19Features, str]:
    """A frozen VGG19Features at `layer` with weights from a torchvision vgg19 state dict file.

    When `sha256` is given, the file's digest must match it. The file is read with
    torch.load(weights_only=True); keys beyond `layer` (deeper convs, the classifier) are ignored.
    Returns the network and the file's sha256.
    """
    path = Path(weights_file)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: VGG19 weights file not found (perceptual.weights_file must name a torchvision vgg19 "
            "state dict saved with torch.save, e.g. vgg19-dcbb9e9d.pth)"
        )
    actual = file_sha256(path)
    if sha256 is not None and actual.lower() != sha256.strip().lower():
        raise ValueError(
            f"{path}: sha256 mismatch for the VGG19 weights: expected {sha256.strip().lower()} "
            f"(perceptual.sha256), got {actual}; point perceptual.weights_file at the right file or "
            "update perceptual.sha256"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a readable torch state dict ({error})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a vgg19 state dict (name -> tensor), got {type(state).__name__}")
    model = VGG19Features(layer)
    wanted = model.state_dict().keys()
    missing = [k for k in wanted if k not in state]
    if missing:
        raise ValueError(
            f"{path}: not a torchvision vgg19 state dict: missing {', '.join(missing[:4])}"
            + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
        )
    try:
        model.load_state_dict({k: state[k] for k in wanted}, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path}: weights do not fit VGG19 ({error})") from None
    return model, actual
