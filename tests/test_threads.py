"""CPU thread counts: a share of the cores per process, less the DataLoader workers; the user's setting wins."""

import pytest

from hba_core.errors import HbaError
from hba_core.threads import configure_torch_threads, cpu_threads


@pytest.mark.parametrize(
    ("cores", "workers", "processes", "expected"),
    [(2, 0, 1, 2), (2, 1, 1, 1), (2, 2, 1, 1), (2, 0, 2, 1), (16, 2, 2, 6), (8, 0, 8, 1), (1, 4, 1, 1)],
)
def test_share_of_the_cores(cores, workers, processes, expected):
    assert cpu_threads(cores=cores, workers=workers, processes=processes, environ={}) == expected


def test_launcher_processes_come_from_local_world_size():
    assert cpu_threads(cores=16, workers=0, environ={"LOCAL_WORLD_SIZE": "4"}) == 4


def test_explicit_settings_win_and_are_checked():
    assert cpu_threads(cores=16, environ={"OMP_NUM_THREADS": "3"}) == 3
    assert cpu_threads(cores=16, environ={"HBA_NUM_THREADS": "5", "OMP_NUM_THREADS": "3"}) == 5
    with pytest.raises(HbaError, match="HBA_NUM_THREADS='two' is not a thread count"):
        cpu_threads(environ={"HBA_NUM_THREADS": "two"})


def test_configure_sets_torch(monkeypatch):
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    monkeypatch.setenv("HBA_NUM_THREADS", "1")
    try:
        assert configure_torch_threads(workers=0) == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
