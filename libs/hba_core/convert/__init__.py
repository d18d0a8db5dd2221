"""hba-convert: build the Atlas from the 13 original releases, and read/write the official release.

One adapter module per source (``hba_core.convert.<source>``, names from the registry's [sources]),
each with ``build(raw_dir, *, check_media=True)`` yielding samples and :class:`~hba_core.convert.base.Reject`.
:func:`~hba_core.convert.base.build_source` runs one, checking labels and media and counting rejects.
:func:`~hba_core.convert.build.build_files` runs several into a samples and a rejects file (hba-convert build).
"""

from hba_core.convert.base import BuildSummary, Reject, adapter, build_source

__all__ = ["BuildSummary", "Reject", "adapter", "build_source"]
