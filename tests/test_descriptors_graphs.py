"""MediaPipe graphs built once per process and reset per clip: a clip's landmarks never depend on the clip before."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:google.*")
pytest.importorskip("mediapipe")


@pytest.mark.parametrize("stream", ["face", "pose"])
def test_reused_graph_gives_the_landmarks_of_a_fresh_one(fixture_data, stream):
    from hba_core.descriptors import video
    from hba_core.media import sample_video_frames

    config = video.VideoConfig()
    clips = [sample_video_frames(fixture_data.data / f"video/clip{k}.mp4", fps=4) for k in (0, 1)]
    video.close_trackers()
    fresh = video.landmarks(clips[1].frames, clips[1].timestamps, stream, config)  # clip 1 first, new graph
    video.close_trackers()
    video.landmarks(clips[0].frames, clips[0].timestamps, stream, config)  # builds the graph, tracks clip 0
    graph = video._SOLUTIONS[(stream, config)].graph
    reused = video.landmarks(clips[1].frames, clips[1].timestamps, stream, config)  # same graph, reset
    assert video._SOLUTIONS[(stream, config)].graph is graph
    assert fresh[1].any() and np.array_equal(fresh[1], reused[1])
    np.testing.assert_array_equal(fresh[0], reused[0])
    video.close_trackers()
    assert not video._SOLUTIONS
