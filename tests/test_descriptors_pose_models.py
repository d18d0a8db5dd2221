"""Pose models mediapipe does not bundle: fetched whole or not at all, and offline one clear error before any store."""

from __future__ import annotations

import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hba_core.descriptors.pose_models import POSE_FILES, ensure_pose_model
from hba_core.errors import HbaError
from hba_core.jsonl import current_umask

BODY = b"not a real tflite, but bytes to fetch" * 100


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if "lite" not in self.path:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY) if "whole" in self.server.mode else len(BODY) * 2))
        self.end_headers()
        self.wfile.write(BODY)  # "broken": the connection closes half way

    def log_message(self, *args):
        pass


@pytest.fixture(params=["whole", "broken"])
def server(request):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.mode = request.param
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield request.param, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_a_missing_model_is_fetched_whole_or_not_at_all(tmp_path, server):
    mode, url = server
    if mode == "whole":
        path = ensure_pose_model(0, tmp_path, url)
        assert path.read_bytes() == BODY and path.name == POSE_FILES[0]
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~current_umask()
        assert ensure_pose_model(0, tmp_path, "http://127.0.0.1:9/") == path  # present: nothing fetched
    else:
        with pytest.raises(HbaError, match="pose_landmark_lite.tflite.*copy the file to"):
            ensure_pose_model(0, tmp_path, url)
    assert sorted(p.name for p in tmp_path.iterdir()) == ([POSE_FILES[0]] if mode == "whole" else [])


def test_offline_is_one_line_naming_the_file_and_the_bundled_choice(tmp_path):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(HbaError) as err:
        ensure_pose_model(0, tmp_path, f"http://127.0.0.1:{port}/")
    assert "\n" not in str(err.value) and "--pose-complexity 1 (bundled)" in str(err.value)
    assert not list(tmp_path.iterdir())


def test_the_bundled_model_needs_nothing():
    assert ensure_pose_model(1, base_url="http://127.0.0.1:9/").exists()
