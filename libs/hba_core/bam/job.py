"""What one hba-bam run is asked to do (:class:`BamJob`) and the media settings its backbone pass reads.

>>> job = BamJob(checkpoint="runs/cls/best", samples="train.jsonl", store="desc.zarr", datasets=["mmsd"])
>>> job.streams
('audio', 'video')
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hba_core.bam.train import BamSettings
from hba_core.media_settings import MediaSettings, media_field

BAM_DIR = "bam"


@dataclass
class BamJob:
    checkpoint: str
    samples: str
    store: str
    datasets: list[str]
    data_root: str = media_field("data_root")
    out: str | None = None  # default: <checkpoint>/bam
    streams: tuple[str, ...] = ("audio", "video")
    no_raw_media: bool = False  # the backbone sees only text; descriptors carry audio and video
    settings: BamSettings = field(default_factory=BamSettings)
    cache_dir: str | None = None  # default: <out>/.cache; "" = no cache: the backbone runs every epoch
    fps: float = media_field("fps")  # the media fields are MediaSettings' (the cache keys hold all of them)
    max_frames: int = media_field("max_frames")
    max_pixels: int = media_field("max_pixels")
    min_pixels: int = media_field("min_pixels")
    max_audio_seconds: float = media_field("max_audio_seconds")
    allow_outside_root: bool = media_field("allow_outside_root")
    batch_size: int = 4  # backbone pass
    report_to: str = "none"  # none | tensorboard | wandb: every dataset's epochs (also in <out>/metrics.jsonl)


def key_settings(job: BamJob) -> dict[str, Any]:
    """The media settings that key the cache (the data root is left out: moving the data keeps the cache)."""
    settings = {**asdict(media_settings(job)), "no_raw_media": job.no_raw_media}
    settings.pop("data_root")
    return settings


def media_settings(job: BamJob) -> MediaSettings:
    """How the backbone reads media in this run (the same for every path, so cached keys stay valid)."""
    return MediaSettings(**{f.name: getattr(job, f.name) for f in fields(MediaSettings)})
