"""Fixtures every test folder may use."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from a second thread, and on a shared 2-core machine two lose much time waiting:
    a module marked ``pytestmark = pytest.mark.usefixtures("one_thread")`` runs on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
