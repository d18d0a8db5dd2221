"""Where a backbone's files are, what kind of model they hold, and a fingerprint of their content.

Every loader asks :func:`locate` first. It reads ``config.json`` - from a local directory or from the
Hugging Face cache for a hub id - without building anything, so a directory that holds the wrong kind
of model is refused before any weights are allocated (``Qwen2_5OmniThinker...from_pretrained`` on a
plain causal LM silently falls back to the 7B default sizes and allocates ~22 GB before failing).

Nothing waits on the network by accident: a hub id found in the cache is loaded from the cache
(``local_files_only``); a hub id not in the cache fails at once when ``HF_HUB_OFFLINE`` (or
``TRANSFORMERS_OFFLINE``) is set, or after one 3 s connect when the hub cannot be reached, naming the
flag that points at a local copy.

>>> from hba_core.model.source import looks_like_hub_id
>>> looks_like_hub_id("Qwen/Qwen2.5-Omni-7B"), looks_like_hub_id("./runs/x"), looks_like_hub_id("/abs/dir")
(True, False, False)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hba_core.errors import InputError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class BackboneSource:
    """A located backbone: ``local_dir`` holds its files (a directory or a hub cache snapshot)."""

    name: str  # as the user gave it
    location: str  # absolute directory, or the hub id
    local_dir: Path | None  # None: a hub id whose weights are not cached yet (online: downloaded on load)
    is_hub: bool
    config: dict[str, Any]

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", ""))

    @property
    def load_from(self) -> str:
        """What ``from_pretrained`` gets: the local files when there are any, else the hub id."""
        return str(self.local_dir) if self.local_dir is not None else self.location


def offline() -> bool:
    """True when the environment forbids the hub (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(var, "").strip().lower() in _TRUE for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def looks_like_hub_id(name: str) -> bool:
    """``owner/name`` with no leading ``.``/``/`` and no ``..``: what the hub accepts as a model id."""
    return bool(_HUB_ID.match(name)) and ".." not in name


def _cached_config(repo_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=os.environ.get("HF_HUB_CACHE") or None)
    return Path(found) if isinstance(found, str) else None


def _read_config(path: Path, name: str) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"cannot read the model config of {name!r} ({exc})") from None
    if not isinstance(config, dict):
        raise InputError(str(path), f"the model config of {name!r} is not a JSON object")
    return config


def locate(
    name_or_path: str, *, base_dirs: Iterable[str | os.PathLike[str]] = (), flag: str = "--base-model"
) -> BackboneSource:
    """Find ``name_or_path`` without loading weights: an absolute directory, a directory relative to one
    of ``base_dirs`` or the working directory, or a hub id (cached, or downloadable when online).

    ``flag`` is the option the error message tells the user to pass. Raises
    :class:`~hba_core.errors.InputError` in one line when nothing is found.
    """
    path = Path(name_or_path).expanduser()
    candidates = [path] if path.is_absolute() else [Path(base) / path for base in base_dirs] + [Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_dir():
            config = candidate / "config.json"
            if not config.is_file():
                raise InputError(str(candidate), f"no config.json: not a model directory; pass {flag} DIR of a model")
            return BackboneSource(
                name_or_path, str(candidate.resolve()), candidate.resolve(), False, _read_config(config, name_or_path)
            )
    if not looks_like_hub_id(name_or_path):
        tried = ", ".join(str(c) for c in candidates)
        raise InputError(name_or_path, f"no such model directory (looked in {tried}); pass {flag} DIR")
    cached = _cached_config(name_or_path)
    if cached is not None:
        return BackboneSource(name_or_path, name_or_path, cached.parent, True, _read_config(cached, name_or_path))
    if offline():
        raise InputError(
            name_or_path,
            "not a local directory and not in the Hugging Face cache, and HF_HUB_OFFLINE is set so nothing is "
            f"downloaded; pass {flag} DIR of a local copy",
        )
    endpoint = _hub_endpoint()
    if not _reachable(endpoint):
        raise InputError(
            name_or_path,
            f"not a local directory, not in the Hugging Face cache, and {endpoint} cannot be reached; "
            f"pass {flag} DIR of a local copy (or set HF_HUB_OFFLINE=1 to fail at once)",
        )
    from huggingface_hub import hf_hub_download

    try:
        config = Path(hf_hub_download(name_or_path, "config.json"))
    except Exception as exc:  # network, auth, missing repo: all end the same way for the user
        raise InputError(
            name_or_path,
            f"cannot fetch config.json from the hub ({type(exc).__name__}); pass {flag} DIR of a local copy",
        ) from None
    # Only config.json is cached so far: from_pretrained downloads the weights by id.
    return BackboneSource(name_or_path, name_or_path, None, True, _read_config(config, name_or_path))


def _hub_endpoint() -> str:
    from huggingface_hub import constants

    return os.environ.get("HF_ENDPOINT") or constants.ENDPOINT


def _reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """One TCP connect to the hub: huggingface_hub retries an unreachable host for ~25 s, transformers longer.

    Behind an HTTP(S) proxy the direct connect says nothing, so the hub is assumed reachable.
    """
    import socket
    from urllib.parse import urlparse

    if any(os.environ.get(var) for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY")):
        return True
    url = urlparse(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def fingerprint(source: BackboneSource) -> str | None:
    """``sha256:<hex>`` of config.json, the safetensors index and the weight files' names and sizes.

    Cheap (no weight is read) and enough to tell two backbones apart; None when no files are local.
    """
    if source.local_dir is None:
        return None
    root = source.local_dir
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors.index.json"):
        if (root / name).is_file():
            digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    for weights in sorted(root.glob("*.safetensors")):
        digest.update(f"{weights.name}\0{weights.stat().st_size}\0".encode())
    return "sha256:" + digest.hexdigest()
