"""Behavioural descriptors (paper 3.4): MediaPipe face mesh and pose, OpenSMILE ComParE 2016 LLDs, in one Zarr store.

Read API (what the BAM adapter uses)::

    from hba_core.descriptors import open_store, pooled
    store = open_store("desc.zarr")
    vectors, valid_counts = pooled(store, "audio", ["cremad/1001_DFA_ANG_XX.wav"])  # (1, 130), (1,)
    values, valid = store.frames("face", "mosei/abc.mp4")                        # (T, 1404), (T,)

Modules: ``video`` and ``audio`` (the extractors), ``store`` (layout, commits, read API),
``extract`` (runs: workers, shards, resume), ``merge``, ``import_pt`` (official ``.pt`` files),
``report`` (stats, show, per-sample vectors).
"""

from hba_core.descriptors.store import ClipResult, DescriptorStore, open_store, pool_frames, pooled

__all__ = ["ClipResult", "DescriptorStore", "open_store", "pool_frames", "pooled"]
