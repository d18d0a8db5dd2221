"""The bundled-solutions pose models mediapipe 0.10.14 does not ship: fetched once, atomically, or one clear error.

``mp.solutions.pose`` complexity 1 (full) is in the wheel; 0 (lite) and 2 (heavy) are downloaded by
mediapipe itself on first use - printing to stdout (where hba writes data), leaving a partial file
behind if the transfer breaks, and failing offline with a traceback. :func:`ensure_pose_model`
does it instead before anything is extracted: a temporary file renamed into place when whole, a
timeout, progress on stderr, and offline a one-line error saying where to put the file.

>>> POSE_FILES[1]
'pose_landmark_full.tflite'
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from hba_core.errors import HbaError
from hba_core.jsonl import current_umask

POSE_FILES = {0: "pose_landmark_lite.tflite", 1: "pose_landmark_full.tflite", 2: "pose_landmark_heavy.tflite"}
MODEL_URL = "https://storage.googleapis.com/mediapipe-assets/"  # where mediapipe's download_utils fetches them
TIMEOUT_S = 20.0


def models_dir() -> Path:
    """Where ``mp.solutions.pose`` looks for its landmark models (inside the mediapipe package)."""
    import mediapipe

    return Path(mediapipe.__file__).parent / "modules" / "pose_landmark"


def ensure_pose_model(complexity: int, where: Path | None = None, base_url: str = MODEL_URL) -> Path:
    """The landmark model file of ``complexity``, fetched into ``where`` (default :func:`models_dir`) if absent."""
    if complexity not in POSE_FILES:
        raise HbaError(f"pose complexity {complexity}: expected one of {', '.join(map(str, POSE_FILES))}")
    target = (where or models_dir()) / POSE_FILES[complexity]
    if target.exists():
        return target
    url = base_url + target.name
    print(f"fetching {url} -> {target} (once; pose complexity {complexity} is not bundled)", file=sys.stderr)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
                shutil.copyfileobj(response, out)
                expected, got = response.headers.get("Content-Length"), out.tell()
            if expected is not None and int(expected) != got:  # a closed connection reads as a short end
                raise OSError(f"the transfer broke off after {got} of {expected} bytes")
            os.chmod(tmp, 0o666 & ~current_umask())  # as a plain open would (mkstemp makes 0600)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except (OSError, urllib.error.URLError, http.client.HTTPException) as exc:  # a broken transfer too
        reason = getattr(exc, "reason", None) or exc
        raise HbaError(
            f"pose complexity {complexity} needs {target.name}, which mediapipe does not bundle, and fetching "
            f"{url} failed ({reason}): copy the file to {target}, or use --pose-complexity 1 (bundled)"
        ) from None
    return target
