"""Fixtures shared by the test files, and the rule for benchmark data that is not on this machine.

A test that needs a file of the shared benchmark data (`grnformer.data.shared`: McCalla sets, counts/, perturb/)
and does not find it raises `SharedDataMissing`, in a fixture or in the test; here that becomes a skip whose
reason names the file and how to supply it, and the run ends with one line counting those tests. CI has the data
and sets GRNFORMER_REQUIRE_DATA=1 (.ci/run): then a missing file fails the test instead.
"""

import os

import pytest
import torch

from grnformer.data.genes import GeneVocab
from grnformer.data.shared import ENV_VAR, SharedDataMissing
from grnformer.inference import device

REQUIRE_DATA = "GRNFORMER_REQUIRE_DATA"
_SKIP_PREFIX = "needs shared data"
_missing: dict[str, set[str]] = {}  # relative path of a missing file -> ids of the tests that needed it


def _not_here(item: pytest.Item, err: SharedDataMissing):
    if os.environ.get(REQUIRE_DATA, "") not in ("", "0"):
        pytest.fail(f"{REQUIRE_DATA} is set and shared data is missing: {err}", pytrace=False)
    _missing.setdefault(err.relative, set()).add(item.nodeid)
    pytest.skip(f"{_SKIP_PREFIX} '{err.relative}', not found here: set ${ENV_VAR} to a directory holding it "
                f"(see `grnformer datasets`)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    try:
        return (yield)
    except SharedDataMissing as err:  # a fixture loading a named dataset or truth
        _not_here(item, err)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    try:
        return (yield)
    except SharedDataMissing as err:
        _not_here(item, err)


def pytest_terminal_summary(terminalreporter):
    if _missing:
        tests = set().union(*_missing.values())
        terminalreporter.write_line(
            f"shared data: {len(tests)} test(s) could not run here, {len(_missing)} file(s) missing "
            f"({', '.join(sorted(_missing)[:3])}{', …' if len(_missing) > 3 else ''}); set ${ENV_VAR} to run them "
            f"(CI does, with {REQUIRE_DATA}=1)", yellow=True, bold=True)


@pytest.fixture(autouse=True)
def fp32_auto_precision(request, monkeypatch):
    """'auto' precision as on a CPU without native bf16 (fp32), unless a test is marked machine_precision: tests
    recompute the model's outputs by hand in fp32, and machines differ in whether they have native bf16."""
    if request.node.get_closest_marker("machine_precision") is None:
        monkeypatch.setattr(device, "native_bf16_cpu", lambda: False)


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
