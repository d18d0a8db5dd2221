"""The resumable state of a run, and the one way every checkpoint directory is written.

A resumed run must continue exactly where the killed one stopped: trainable weights, optimizer and
scheduler state, the data position (the recipe's own progress record), and the random number
generators - the CPU generator *and* every CUDA device's (dropout masks on GPU come from the latter).

:func:`atomic_dir` is used by every writer of a directory (SFT ``last/`` and ``best/``, GRPO steps and
``final/``, BAM sets): the new directory is written beside the target, flushed to disk, then swapped in
with one atomic ``renameat2(RENAME_EXCHANGE)`` where the filesystem has it, so a reader polling the
path sees the old directory or the new one, never a missing or half-written one.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> with atomic_dir(root / "best") as tmp:
...     _ = (tmp / "weights.txt").write_text("1")
>>> sorted(p.name for p in root.iterdir())
['best']
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from hba_core.jsonl import current_umask
from hba_core.training.distributed import barrier

# ------------------------------------------------------------------ RNG


def rng_state() -> dict[str, Any]:
    """This process's generators: ``{"torch": CPU state, "cuda": [state per device]}`` (no ``cuda`` without CUDA)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any] | torch.Tensor) -> None:
    """Restore :func:`rng_state`'s output (a bare tensor, the CPU state, is what older SFT runs saved)."""
    if isinstance(state, torch.Tensor):
        torch.set_rng_state(state)
        return
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------ weights and optimizer


def trainable_params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters being trained, on CPU (what a resumable state needs besides the frozen base)."""
    return {n: p.detach().cpu() for n, p in model.named_parameters() if p.requires_grad}


def load_params(model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Copy ``saved`` (from :func:`trainable_params`) into ``model`` in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in saved.items():
            params[name].copy_(value)


def capture_state(model: torch.nn.Module, optimizer: Any, scheduler: Any, progress: dict[str, Any]) -> dict[str, Any]:
    """Everything a single-process run resumes from, as one ``torch.save``-able dict."""
    return {
        "progress": progress,
        "rng": rng_state(),
        "params": trainable_params(model),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
    }


def restore_state(state: dict[str, Any], model: torch.nn.Module, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Load :func:`capture_state`'s dict back; returns its ``progress`` (RNG restored last, as it was saved)."""
    load_params(model, state["params"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"] if "rng" in state else state["torch_rng"])
    return state["progress"]


# ------------------------------------------------------------------ atomic directories

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2``); False where the libc or filesystem lacks it."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def _fsync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` to disk, so the rename never publishes unwritten data."""
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit(tmp: Path, target: Path) -> None:
    if not target.exists():
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp)  # tmp now holds the old directory; the new one is already in place
    else:  # no atomic swap here (e.g. NFS): the old one moves aside only for the instant of one rename
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old)
    _fsync_dir(target.parent)


@contextlib.contextmanager
def atomic_dir(target: str | os.PathLike[str], *, is_main: bool = True, collective: bool = False) -> Iterator[Path]:
    """Yield a folder beside ``target`` to write into; when the block ends without error it replaces ``target``.

    On error the folder is removed and ``target`` is untouched. The folder is ``.<name>.tmp`` (a leftover
    from a killed run is cleared first). ``collective=True``: every rank enters (DeepSpeed writes its
    shards into the folder), only ``is_main`` creates and publishes it, with barriers in between.
    The directory gets the mode ``mkdir`` would give (``0o777`` minus the umask).
    """
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    if is_main:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        os.chmod(tmp, 0o777 & ~current_umask())
    if collective:
        barrier()
    try:
        yield tmp
        if collective:
            barrier()  # every rank has written its part
        if is_main:
            _fsync_tree(tmp)
            _commit(tmp, target)
    except BaseException:
        if is_main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if collective:
        barrier()  # no rank reads the target before it is in place


def save_file_atomic(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to ``path`` through a temp file and a rename (a reader never sees half of it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
