"""The key of a recipe stage: its command line and the content of the inputs it names.

``recipes/lib.sh`` skips a finished stage only when the key it recorded equals the key of the command it
is about to run, so re-running a recipe with a changed input (a new ``PRED=`` under the same ``NAME=``, a
re-trained model) re-runs every stage that reads it, and nothing else.

What enters the key, for each argument of the command:

- the argument itself (flags, names, paths as written);
- a regular file: its bytes (sha256);
- a model, checkpoint, BAM or descriptor-store folder (one holding ``config.json``, ``summary.json`` or
  ``zarr.json``): the relative path, size and modification time of each file in it (bytes would cost
  minutes for a 7B model; re-training rewrites them);
- any other folder (a data root of 100,000 clips): its path only.

The stage's own output (and anything inside it) is left out, so a finished stage keys the same way
before and after it ran.

Example (what ``stage`` in recipes/lib.sh runs):
    python -m hba_core.recipe_stage runs/t/pred.jsonl hba-predict --model m --out runs/t/pred.jsonl
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

CHUNK = 1 << 20
FINGERPRINTED = ("config.json", "summary.json", "zarr.json")  # folders whose files key the stage


def _inside(path: Path, output: Path) -> bool:
    return path == output or output in path.parents


def _folder_fingerprint(folder: Path, digest: hashlib._Hash) -> None:
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            stat = path.stat()
            digest.update(f"{path.relative_to(folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())


def stage_key(output: str, command: Sequence[str]) -> str:
    """sha256 over the command's arguments and the inputs they name (see the module docstring)."""
    out = Path(output).resolve()
    digest = hashlib.sha256()
    for arg in command:
        digest.update(arg.encode() + b"\0")
        path = Path(arg)
        if not arg or not path.exists() or _inside(path.resolve(), out):
            continue
        if path.is_file():
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
        elif path.is_dir() and any((path / marker).is_file() for marker in FINGERPRINTED):
            _folder_fingerprint(path, digest)
    return digest.hexdigest()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m hba_core.recipe_stage OUTPUT CMD [ARG...]", file=sys.stderr)
        return 2
    print(stage_key(argv[0], argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
