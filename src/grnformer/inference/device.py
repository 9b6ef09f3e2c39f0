"""Where the model runs (CUDA when present) and in which precision (bf16 autocast on GPUs that support it, fp32
on CPU where bf16 attention is not faster), and a bundle loaded onto that device."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from grnformer.errors import InputError
from grnformer.inference.options import PRECISIONS
from grnformer.train.checkpoint import Bundle, load_bundle


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


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast on a bf16-capable GPU for 'auto', always for 'bf16'; plain fp32 otherwise."""
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}; got '{precision}'.")
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda"
                                       and torch.cuda.is_bf16_supported())
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def load_task_bundle(checkpoint: str | Path | Bundle, device: str | torch.device | None = None
                     ) -> tuple[Bundle, torch.device]:
    """A bundle (loaded from a path, or as given) with its model on the resolved device, in eval mode."""
    dev = resolve_device(device)
    bundle = checkpoint if isinstance(checkpoint, Bundle) else load_bundle(checkpoint, map_location="cpu")
    bundle.model.to(dev).eval()
    return bundle, dev
