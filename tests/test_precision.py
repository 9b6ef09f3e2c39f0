"""The precision rule: 'auto' runs bf16 autocast on a CPU with native bf16 (and on bf16 GPUs), fp32 elsewhere, and
on real cells the shipped model's bf16 outputs stay close to its fp32 ones (benchmarks/bench_precision.py measures
how close on development sets; this guards the routing and a coarse bound)."""

import numpy as np
import pytest
import torch

from grnformer import InputError
from grnformer.bundle.checkpoint import load_bundle, resolve_checkpoint
from grnformer.data.corpus import datasets
from grnformer.inference import device
from grnformer.tasks.classify import classify
from grnformer.tasks.embed import embed
from grnformer.tasks.task_options import ClassifyOptions, EmbedOptions

CPU = torch.device("cpu")


def test_auto_follows_the_cpus_native_bf16_and_explicit_choices_win(monkeypatch):
    for native in (True, False):
        monkeypatch.setattr(device, "native_bf16_cpu", lambda native=native: native)
        assert device.uses_bf16(CPU, "auto") is native
        assert device.uses_bf16(CPU, "bf16") and not device.uses_bf16(CPU, "fp32")
        assert isinstance(device.autocast(CPU, "auto"), torch.autocast) is native
        assert not device.uses_bf16(CPU, "auto", rounding_sensitive=True)  # knock-outs: fp32 under 'auto'
        assert device.uses_bf16(CPU, "bf16", rounding_sensitive=True)       # ...unless asked
    with pytest.raises(InputError, match="precision must be one of"):
        device.uses_bf16(CPU, "fp16")


def test_the_default_on_a_native_bf16_cpu_is_bf16_and_close_to_fp32(monkeypatch, one_thread):
    bundle = load_bundle(resolve_checkpoint("shipped"))
    cells = datasets.load("pbmc3k")[:64].copy()
    monkeypatch.setattr(device, "native_bf16_cpu", lambda: True)
    auto = embed(bundle, cells.copy(), progress=False)
    bf16 = embed(bundle, cells.copy(), EmbedOptions(precision="bf16"), progress=False)
    fp32 = embed(bundle, cells.copy(), EmbedOptions(precision="fp32"), progress=False)
    np.testing.assert_array_equal(auto, bf16)  # 'auto' took the bf16 path
    assert not np.array_equal(bf16, fp32)      # ...which differs from fp32 (so the path is real)
    cosine = (bf16 * fp32).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(fp32, axis=1)
    assert np.median(cosine) > 0.99
    labels = {}
    for precision in ("bf16", "fp32"):
        out = cells.copy()
        classify(bundle, out, ClassifyOptions(precision=precision), progress=False)
        labels[precision] = out.obs["grnformer_cell_type"].astype(str).to_numpy()
    assert np.mean(labels["bf16"] == labels["fp32"]) >= 0.95
