"""Choosing the torch device for training and inference.

A job uses the GPUs it can see. Under SLURM (or any scheduler that sets CUDA_VISIBLE_DEVICES)
that is exactly the GPU it was given, which torch calls cuda:0. Under torchrun each process
takes the GPU of its LOCAL_RANK. On a workstation where one job sees several GPUs, plain
'cuda' claims the first GPU no other SciSR job holds (`scisr.compute.claim_gpu`: a lock file
per GPU, held until the process exits), so `--resources gpu=N` with N concurrent jobs puts them
on N different GPUs instead of all on GPU 0.
"""

from __future__ import annotations

import os

import torch

from scisr.compute import claim_gpu


def resolve_device(device: str) -> torch.device:
    """torch.device for 'cpu', 'cuda' or 'cuda:N', refusing CUDA when torch cannot see a GPU."""
    dev = torch.device(device)
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: use 'cpu', 'cuda' or 'cuda:N'")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} requested but torch.cuda.is_available() is False "
            "(no visible GPU or a CPU-only torch build); use device='cpu'"
        )
    if dev.type == "cuda" and dev.index is None:
        if "LOCAL_RANK" in os.environ:
            dev = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        elif torch.cuda.device_count() > 1:
            dev = torch.device("cuda", claim_gpu(torch.cuda.device_count()))
        else:
            dev = torch.device("cuda", 0)
    return dev


def _cpu_flags() -> set[str]:
    """The CPU feature flags Linux reports (/proc/cpuinfo 'flags' or 'Features'); empty elsewhere."""
    try:
        text = open("/proc/cpuinfo", encoding="ascii", errors="replace").read()  # noqa: SIM115 (small file)
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """Whether bf16 autocast pays on `device`, and why: CUDA GPUs that support bf16; x86 CPUs with AVX512-BF16
    or AMX instructions. Elsewhere bf16 runs emulated and is slower than fp32, so training stays fp32 (figures:
    bench/README.md, "bf16 training quality")."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, f"bf16 autocast: {torch.cuda.get_device_name(device)} supports bf16"
        return False, f"fp32: {torch.cuda.get_device_name(device)} has no bf16 support"
    if device.type != "cpu":
        return False, f"fp32: no bf16 autocast on {device.type}"
    flags = _cpu_flags()
    found = sorted({"avx512_bf16", "amx_bf16"} & flags)
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if not found and any(check is not None and check() for check in checks):
        found = ["bf16 instructions (torch.cpu)"]
    if found:
        return True, f"bf16 autocast: this CPU has {' and '.join(found)}"
    return False, "fp32: this CPU has no AVX512-BF16 or AMX instructions (bf16 would be emulated, slower than fp32)"
