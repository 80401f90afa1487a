from pathlib import Path

import pytest
from kernel_start import start_retrying

ROOT = Path(__file__).resolve().parents[1]

try:  # nbval starts one kernel per notebook and has no retry of its own
    import nbval.kernel

    nbval.kernel.start_new_kernel = start_retrying(nbval.kernel.start_new_kernel)
except ImportError:
    pass


@pytest.fixture
def root() -> Path:
    return ROOT


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch thread, then restore the count.

    Small models and tensors: extra intra-op threads only add hand-off costs, badly so on a
    busy machine. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
