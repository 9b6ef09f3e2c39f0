"""Fixtures shared by the training tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One intra-op thread: on a shared 2-core machine, two threads waiting on each other are ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
