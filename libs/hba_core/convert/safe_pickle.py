"""Load the pickles some releases ship (UR-FUNNY, MUStARD folds) without running arbitrary code.

Only builtin containers/scalars and numpy arrays/scalars may be reconstructed; anything else is refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from hba_core.errors import InputError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def load(path: Path) -> Any:
    """The object in a data pickle (protocol 2 files from Python 2 decode as latin-1)."""
    try:
        with open(path, "rb") as fh:
            return _Restricted(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise InputError(str(path), f"not a readable data pickle ({exc})") from None
