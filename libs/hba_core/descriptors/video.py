"""The video streams: MediaPipe face mesh (468 landmarks x, y, z) and body pose (33 landmarks x, y, z, visibility).

mediapipe 0.10.14 ships both models inside its wheel and runs them offline through ``mp.solutions``
(the default). Newer mediapipe only has the Tasks API, whose ``.task`` model files the user passes
by path (``face_model=``, ``pose_model=``); the face landmarker's 10 iris points are dropped so the
layout stays 468 x 3 either way.

A frame where nothing is detected is a row of NaN with ``valid = False`` - never zeros, which would
look like a real face at the image corner. A clip's landmarks must not depend on which clip a worker
processed before (resumed and parallel runs give the same values as a single uninterrupted run): the
bundled models' graphs are built once per process and *reset* (a new graph run: every calculator's
tracking state starts afresh, the models stay loaded) before each clip - building one costs about as
much as a few frames. Tasks API trackers are rebuilt per clip (their video mode has no reset).

>>> VideoConfig().fps
5.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FACE_POINTS, POSE_POINTS = 468, 33
FACE_DIM, POSE_DIM = FACE_POINTS * 3, POSE_POINTS * 4
VIDEO_STREAMS = ("face", "pose")


@dataclass(frozen=True)
class VideoConfig:
    """How video frames are sampled and which landmark models run on them."""

    fps: float = 5.0  # frames per second sampled; 5 follows expressions and gestures (~200 ms) at 1/5 the cost of 25
    max_side: int | None = 640  # downscale longer side first; MediaPipe works at 192-256 px internally anyway
    pose_complexity: int = 1  # 1 full is bundled in mediapipe 0.10.14; 0 lite is fetched once (pose_models)
    min_detection_confidence: float = 0.5
    face_model: str | None = None  # a face_landmarker.task file (Tasks API) instead of the bundled face mesh
    pose_model: str | None = None  # a pose_landmarker_*.task file instead of the bundled pose model

    def describe(self, stream: str) -> dict[str, Any]:
        """The stream's description for the store attributes (dimension, column names, settings)."""
        if stream == "face":
            columns = [f"face_{i}_{c}" for i in range(FACE_POINTS) for c in "xyz"]
            model = self.face_model or "mp.solutions.face_mesh (bundled)"
        else:
            columns = [f"pose_{i}_{c}" for i in range(POSE_POINTS) for c in ("x", "y", "z", "visibility")]
            model = self.pose_model or f"mp.solutions.pose complexity {self.pose_complexity} (bundled)"
        settings = {k: v for k, v in asdict(self).items() if k not in ("face_model", "pose_model")}
        return {"dim": len(columns), "source": f"mediapipe {model}", **settings, "columns": columns}


# Wire layout of a NormalizedLandmarkList whose landmarks all carry the same fields (what both bundled models
# return): per landmark 0x0a <len>, then tag + float32 per field (x 0x0d, y 0x15, z 0x1d, visibility 0x25,
# presence 0x2d). Reading floats straight from it is ~100x faster than touching 468 x 3 protobuf attributes,
# which would cost about a fifth of the face model's own time per frame.
_FIELD_TAGS = (0x0D, 0x15, 0x1D, 0x25, 0x2D)


def _rows_from_wire(message: Any, n: int, keep: int) -> np.ndarray | None:
    """``(n * keep,)`` float32 from the serialized list, or None when its layout is not the uniform one."""
    raw = np.frombuffer(message.SerializeToString(), np.uint8)
    if raw.size % n or raw.size // n < 2 + 5 * keep:
        return None
    record = raw.size // n
    fields = (record - 2) // 5
    if 2 + 5 * fields != record:
        return None
    table = raw.reshape(n, record)  # (n, 2 + 5 * fields)
    expected = np.array([0x0A, record - 2, *[b for t in _FIELD_TAGS[:fields] for b in (t, 0, 0, 0, 0)]], np.uint8)
    tag_positions = [0, 1, *range(2, record, 5)]
    if not (table[:, tag_positions] == expected[tag_positions]).all():
        return None
    values = np.ascontiguousarray(table[:, 2:]).reshape(n, fields, 5)[:, :keep, 1:]  # (n, keep, 4 bytes)
    return np.ascontiguousarray(values).view("<f4").reshape(-1).astype(np.float32)


def _landmark_rows(landmarks: Any, n: int, with_visibility: bool) -> np.ndarray:
    if with_visibility:
        return np.array([[p.x, p.y, p.z, p.visibility] for p in landmarks[:n]], np.float32).reshape(-1)
    return np.array([[p.x, p.y, p.z] for p in landmarks[:n]], np.float32).reshape(-1)


class _SolutionsTracker:
    """Bundled ``mp.solutions`` models (mediapipe 0.10.14)."""

    def __init__(self, stream: str, config: VideoConfig):
        import mediapipe as mp

        self.stream = stream
        if stream == "face":
            self.graph = mp.solutions.face_mesh.FaceMesh(
                static_image_mode=False,
                max_num_faces=1,
                refine_landmarks=False,
                min_detection_confidence=config.min_detection_confidence,
            )
        else:
            from hba_core.descriptors.pose_models import ensure_pose_model

            ensure_pose_model(config.pose_complexity)  # not bundled (0, 2): fetched once, or one clear error
            self.graph = mp.solutions.pose.Pose(
                static_image_mode=False,
                model_complexity=config.pose_complexity,
                min_detection_confidence=config.min_detection_confidence,
            )

    def __call__(self, frame: np.ndarray, timestamp_ms: int) -> np.ndarray | None:
        result = self.graph.process(frame)
        if self.stream == "face":
            found = result.multi_face_landmarks
            if not found:
                return None
            fast = _rows_from_wire(found[0], FACE_POINTS, 3) if len(found[0].landmark) == FACE_POINTS else None
            return fast if fast is not None else _landmark_rows(found[0].landmark, FACE_POINTS, False)
        found = result.pose_landmarks
        if found is None:
            return None
        fast = _rows_from_wire(found, POSE_POINTS, 4) if len(found.landmark) == POSE_POINTS else None
        return fast if fast is not None else _landmark_rows(found.landmark, POSE_POINTS, True)

    def close(self) -> None:
        self.graph.close()


class _TasksTracker:
    """Tasks API landmarkers from user-provided ``.task`` files (newer mediapipe)."""

    def __init__(self, stream: str, config: VideoConfig):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self.mp, self.stream = mp, stream
        mode = vision.RunningMode.VIDEO
        if stream == "face":
            options = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=config.face_model),
                running_mode=mode,
                num_faces=1,
                min_face_detection_confidence=config.min_detection_confidence,
            )
            self.graph = vision.FaceLandmarker.create_from_options(options)
        else:
            options = vision.PoseLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=config.pose_model),
                running_mode=mode,
                num_poses=1,
                min_pose_detection_confidence=config.min_detection_confidence,
            )
            self.graph = vision.PoseLandmarker.create_from_options(options)

    def __call__(self, frame: np.ndarray, timestamp_ms: int) -> np.ndarray | None:
        image = self.mp.Image(image_format=self.mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        result = self.graph.detect_for_video(image, timestamp_ms)
        if self.stream == "face":
            found = result.face_landmarks
            return None if not found else _landmark_rows(found[0], FACE_POINTS, False)
        found = result.pose_landmarks
        return None if not found else _landmark_rows(found[0], POSE_POINTS, True)

    def close(self) -> None:
        self.graph.close()


def landmarks(
    frames: np.ndarray, timestamps: np.ndarray, stream: str, config: VideoConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks of one clip's RGB frames ``(T, H, W, 3)``: ``(values (T, D) float32, valid (T,) bool)``.

    Rows without a detection are NaN and ``valid`` is False there.
    """
    if stream not in VIDEO_STREAMS:
        raise ValueError(f"not a video stream: {stream!r}")
    dim = FACE_DIM if stream == "face" else POSE_DIM
    task_file = config.face_model if stream == "face" else config.pose_model
    values = np.full((len(frames), dim), np.nan, np.float32)  # (T, D)
    valid = np.zeros(len(frames), bool)
    if task_file:
        tracker: _SolutionsTracker | _TasksTracker = _TasksTracker(stream, config)
    else:
        tracker = _solutions_tracker(stream, config)
    try:
        for t, (frame, stamp) in enumerate(zip(frames, timestamps)):
            row = tracker(frame, int(round(float(stamp) * 1000)))
            if row is not None:
                values[t], valid[t] = row, True
    finally:
        if task_file:
            tracker.close()
    return values, valid


_SOLUTIONS: dict[tuple[str, VideoConfig], _SolutionsTracker] = {}


def _solutions_tracker(stream: str, config: VideoConfig) -> _SolutionsTracker:
    """This process's tracker for ``(stream, config)``, reset so that the clip starts from a clean state."""
    tracker = _SOLUTIONS.get((stream, config))
    if tracker is None:
        tracker = _SOLUTIONS[(stream, config)] = _SolutionsTracker(stream, config)
    else:
        tracker.graph.reset()
    return tracker


def close_trackers() -> None:
    """Close this process's cached MediaPipe graphs (they hold threads and model buffers)."""
    while _SOLUTIONS:
        _SOLUTIONS.popitem()[1].close()
