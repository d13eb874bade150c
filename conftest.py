import pytest
import torch


@pytest.fixture(scope='module')
def one_thread():
    """Small tensors: on 2 busy cores a second intra-op thread only spins against other jobs (measured 3-30x
    slower). Modules opt in with `pytestmark = pytest.mark.usefixtures('one_thread')`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
