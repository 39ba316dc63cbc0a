"""One intra-op thread per test: the tensors here are tiny, and on a shared 2-core machine
waiting for a second thread costs more than it gives."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)
