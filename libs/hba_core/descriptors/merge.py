"""Join the stores of a sharded run (``--shard i/n``) into one.

Clips are copied stream by stream in the order of the inputs; a media key already in the output
(the same shard merged twice, or a re-run of the merge) is skipped, so merging is resumable too.

>>> merge_stores  # doctest: +ELLIPSIS
<function merge_stores at ...>
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hba_core.descriptors.store import ClipResult, DescriptorStore, open_store
from hba_core.jsonl import PathLike


@dataclass
class MergeSummary:
    clips: dict[str, int] = field(default_factory=dict)  # stream -> clips copied
    skipped: int = 0  # clips already in the output
    errors: int = 0  # error rows copied


def merge_stores(out: PathLike, inputs: list[PathLike], *, batch: int = 512) -> MergeSummary:
    """Copy every committed clip and error of ``inputs`` into the store at ``out`` (created if absent)."""
    summary = MergeSummary()
    stores = [open_store(p) for p in inputs]
    first = stores[0].group.attrs
    extra = {"created_by": "hba-descriptors merge", "libraries": first["libraries"], "shard": None}
    with DescriptorStore.open_for_writing(out, {}, extra) as target:
        for source in stores:
            target.add_streams(source.streams)  # refuses shards extracted with other settings
            for stream in source.streams:
                done = target.done(stream)
                keys = [str(k) for k in source.column(stream, "keys")]
                datasets = [str(d) for d in source.column(stream, "datasets")]
                offsets = source.column(stream, "offsets")
                lengths = source.column(stream, "lengths")
                for start in range(0, len(keys), batch):
                    stop = min(len(keys), start + batch)
                    lo, hi = int(offsets[start]), int(offsets[stop - 1] + lengths[stop - 1])
                    values = source.group[stream]["frames"][lo:hi]  # one read per batch
                    valid = source.group[stream]["valid"][lo:hi]
                    clips = []
                    for i in range(start, stop):
                        if keys[i] in done:
                            summary.skipped += 1
                            continue
                        a, b = int(offsets[i]) - lo, int(offsets[i] + lengths[i]) - lo
                        clips.append(ClipResult(keys[i], datasets[i], {stream: (values[a:b], valid[a:b])}))
                    if clips:
                        target.append(clips)
                        summary.clips[stream] = summary.clips.get(stream, 0) + len(clips)
            known = {(e["key"], e["stream"]) for e in target.errors()}
            failures = [
                e
                for e in source.errors()
                if (e["key"], e["stream"]) not in known and e["key"] not in target.index(e["stream"])
            ]
            if failures:
                target.append([ClipResult(e["key"], "", errors={e["stream"]: e["reason"]}) for e in failures])
                summary.errors += len(failures)
    return summary
