"""Fixtures shared by the test files."""

import pytest
import torch

from grnformer.data.genes import GeneVocab


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads waiting on each other are ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def vocab() -> GeneVocab:
    """The default vocabulary (protein-coding genes of human and mouse)."""
    return GeneVocab.default()
