"""Where the model runs (CUDA when present) and in which precision (bf16 autocast where the hardware multiplies
bf16 natively, fp32 elsewhere), and a bundle loaded onto that device."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from grnformer.bundle.checkpoint import Bundle, load_bundle
from grnformer.errors import InputError
from grnformer.inference.option_fields import PRECISIONS


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or CUDA when available, else CPU; an unavailable device is an InputError."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise InputError(f"unknown device '{device}' (use cpu, cuda, cuda:1 …).") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device '{device}' requested but this torch has no usable CUDA GPU; use --device cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError(f"device '{device}' does not exist: {torch.cuda.device_count()} GPU(s) visible.")
    return dev


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX tiles). Only there does bf16 autocast run
    faster than fp32; elsewhere torch emulates it."""
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # torch.cpu's private probes: without them, assume no native bf16
        return False


def uses_bf16(device: torch.device, precision: str = "auto", rounding_sensitive: bool = False) -> bool:
    """'bf16' always, 'fp32' never, 'auto' on a bf16-capable GPU or a CPU with native bf16, except for
    ``rounding_sensitive`` outputs. The CPU half of 'auto' was decided per task on development sets
    (benchmarks/bench_precision.py, RESULTS.md "bf16 on CPU"): bf16's labels, embeddings, denoised counts and
    attention networks agree with fp32's within bounds fixed beforehand. Knock-out effects (perturb: differences
    of two near-equal forward passes) did not (Spearman 0.61 and 0.89 with fp32's), so they are
    ``rounding_sensitive`` and 'auto' keeps them in fp32 on every device."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got '{precision}'.")
    if precision != "auto":
        return precision == "bf16"
    if rounding_sensitive:
        return False
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and native_bf16_cpu()


def autocast(device: torch.device, precision: str = "auto", rounding_sensitive: bool = False
             ) -> contextlib.AbstractContextManager:
    """bf16 autocast where `uses_bf16` says so; plain fp32 otherwise."""
    if not uses_bf16(device, precision, rounding_sensitive):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def load_task_bundle(checkpoint: str | Path | Bundle, device: str | torch.device | None = None
                     ) -> tuple[Bundle, torch.device]:
    """A bundle (loaded from a path, or as given) with its model on the resolved device, in eval mode."""
    dev = resolve_device(device)
    bundle = checkpoint if isinstance(checkpoint, Bundle) else load_bundle(checkpoint, map_location="cpu")
    bundle.model.to(dev).eval()
    return bundle, dev
