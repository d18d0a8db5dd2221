"""Whisper transcripts for samples that have none (paper 3.4), cached per media file and resumable.

Audio is decoded with :func:`hba_core.media.decode_audio` (PyAV: wav, or a video's audio track; no
ffmpeg binary) and handed to openai-whisper as float32 arrays. Clips up to 30 s are decoded in
batches with ``whisper.decode``; longer ones go through ``model.transcribe`` (sliding 30 s windows).
Every finished transcript is appended to a cache file (:class:`~hba_core.jsonl.ResumableWriter`)
before the next batch starts, so a killed run loses at most one batch; the output file is written
atomically at the end. The transcript goes into the sample through
:func:`hba_core.prompts.with_transcript` (``metadata.transcript`` + the prompt where the dataset's
template has a transcript), which also records the model and language.

>>> needs_transcript({"problem": "<audio>\\nWhat emotion?", "dataset": "cremad"})
True
>>> needs_transcript({"problem": "<audio>\\nI'm fine.\\nWhat emotion?", "dataset": "cremad"})
False
"""

from __future__ import annotations

import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hba_core.errors import HbaError, InputError, MediaError
from hba_core.jsonl import PathLike, ResumableWriter, display_name, iter_jsonl, output_lock, write_jsonl
from hba_core.media import SAMPLE_RATE, decode_audio, resolve_media
from hba_core.prompts import split_problem, with_transcript
from hba_core.sample_checks import sample_problem, where_of
from hba_core.samples import iter_samples

WINDOW_SECONDS = 30  # whisper's input window


@dataclass
class TranscribeSummary:
    samples: int = 0
    had_transcript: int = 0  # passed through untouched
    no_media: int = 0  # nothing to transcribe: passed through without transcript
    transcribed: int = 0  # samples that got a transcript (from this run or the cache)
    media_transcribed: int = 0  # media decoded by whisper in this run
    media_cached: int = 0  # media whose transcript came from the cache
    errors: list[tuple[str, str]] = field(default_factory=list)  # (media key, reason); their samples pass through
    bad_rows: list[str] = field(default_factory=list)  # "file:line (id): reason": passed through untouched


def needs_transcript(sample: dict[str, Any]) -> bool:
    """True when the sample carries no transcript (``metadata.transcript`` null, or none in the prompt)."""
    metadata = sample.get("metadata") or {}
    if "transcript" in metadata:
        return metadata["transcript"] is None
    return split_problem(sample.get("problem", ""))[1] is None


def media_of(sample: dict[str, Any]) -> str | None:
    """The media whose speech is the sample's transcript: its first audio file, else its first video."""
    for name in ("audios", "videos"):
        if sample.get(name):
            return sample[name][0]
    return None


def model_label(model: str) -> str:
    """How the model is recorded in metadata: ``whisper-large-v3`` for a name, the path for a checkpoint."""
    return model if Path(model).exists() else f"whisper-{model}"


def load_whisper(model: str, device: str) -> Any:  # whisper.model.Whisper
    """``whisper.load_model`` with user errors for unknown names and models that cannot be downloaded."""
    import whisper

    if not Path(model).exists() and model not in whisper.available_models():
        from hba_core.errors import UnknownNameError

        raise UnknownNameError("whisper model (or no such checkpoint file)", model, whisper.available_models())
    try:
        return whisper.load_model(model, device=device)
    except (urllib.error.URLError, OSError) as exc:
        raise HbaError(
            f"cannot load whisper model {model!r} ({exc}); without network, download it elsewhere "
            "into ~/.cache/whisper or pass the checkpoint's path to --model"
        ) from None


def _transcribe_batch(model: Any, audios: list[np.ndarray], language: str | None) -> list[tuple[str, str]]:
    """``(text, language)`` per clip; clips up to 30 s go through one batched ``whisper.decode``."""
    import torch
    import whisper

    fp16 = model.device.type == "cuda"
    out: list[tuple[str, str] | None] = [None] * len(audios)
    short = [i for i, a in enumerate(audios) if a.size <= WINDOW_SECONDS * SAMPLE_RATE]
    if short:
        mels = torch.stack(
            [
                whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(audios[i])), n_mels=model.dims.n_mels)
                for i in short
            ]
        )  # (B, n_mels, 3000)
        options = whisper.DecodingOptions(language=language, fp16=fp16, without_timestamps=True)
        for i, result in zip(short, whisper.decode(model, mels.to(model.device), options)):
            out[i] = (result.text.strip(), result.language)
    for i, audio in enumerate(audios):
        if out[i] is None:
            result = model.transcribe(audio, language=language, fp16=fp16, verbose=None)
            out[i] = (str(result["text"]).strip(), str(result["language"]))
    return out  # type: ignore[return-value]


def transcribe_samples(
    samples: PathLike,
    root: PathLike,
    out: PathLike,
    *,
    model: str = "large-v3",
    device: str | None = None,
    batch_size: int = 8,
    language: str | None = None,
    force: bool = False,
    cache: PathLike | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TranscribeSummary:
    """Write ``samples`` to ``out`` with a Whisper transcript for every sample that lacks one (``force``: all).

    ``cache`` (default ``<out>.transcripts.jsonl``) keeps one line per transcribed media file and
    model; a re-run reuses it, so a killed run resumes where it stopped.
    """
    with output_lock(out):  # two runs on one --out would replace each other's file
        return _transcribe_locked(samples, root, out, model, device, batch_size, language, force, cache, progress)


def _read_rows(samples: PathLike, summary: TranscribeSummary) -> tuple[list[dict[str, Any]], set[int]]:
    """Every row in order, and the positions of the rows that cannot be transcribed (reported, passed through).

    A repeated id is an error: the output would hold two samples under one id.
    """
    rows, bad, first_line = [], set(), {}
    name = display_name(samples)
    for line, sample in iter_samples(samples, media=True):
        if sample["id"] in first_line:
            raise InputError(
                f"{name}:{line}",
                f"id {sample['id']!r} already used on line {first_line[sample['id']]}; ids must be unique",
            )
        first_line[sample["id"]] = line
        problem = sample_problem(sample)
        if problem is not None:  # no prompt to put a transcript into, or media that are not a list of paths
            summary.bad_rows.append(f"{where_of(name, line, sample)}: {problem}")
            bad.add(len(rows))
        rows.append(sample)
    return rows, bad


def _transcribe_locked(
    samples: PathLike,
    root: PathLike,
    out: PathLike,
    model: str,
    device: str | None,
    batch_size: int,
    language: str | None,
    force: bool,
    cache: PathLike | None,
    progress: Callable[[int, int], None] | None,
) -> TranscribeSummary:
    summary = TranscribeSummary()
    rows, bad = _read_rows(samples, summary)
    label = model_label(model)
    todo_keys: dict[str, None] = {}
    for i, sample in enumerate(rows):
        if i not in bad and (force or needs_transcript(sample)):
            media = media_of(sample)
            if media is not None:
                todo_keys[media] = None
    cache_path = Path(cache) if cache else Path(f"{out}.transcripts.jsonl")
    prefix = f"{label}|{language or 'auto'}|"
    found: dict[str, tuple[str, str]] = {}
    with ResumableWriter(cache_path, key="key") as writer:
        if cache_path.exists():
            for _, entry in iter_jsonl(cache_path):
                if entry["key"].startswith(prefix):
                    found[entry["media"]] = (entry["text"], entry["language"])
        pending = [k for k in todo_keys if k not in found]
        summary.media_cached = len(todo_keys) - len(pending)
        whisper_model = load_whisper(model, device or _default_device()) if pending else None
        for start in range(0, len(pending), batch_size):
            keys, audios = [], []
            for key in pending[start : start + batch_size]:
                try:
                    audios.append(decode_audio(resolve_media(root, key)))
                    keys.append(key)
                except MediaError as exc:
                    summary.errors.append((key, exc.message))
            if keys:
                results = _transcribe_batch(whisper_model, audios, language)
                writer.write(
                    [
                        {"key": prefix + k, "media": k, "model": label, "text": text, "language": lang}
                        for k, (text, lang) in zip(keys, results)
                    ]
                )
                found.update(zip(keys, results))
                summary.media_transcribed += len(keys)
            if progress:
                progress(min(start + batch_size, len(pending)), len(pending))
    write_jsonl(out, _updated(rows, bad, found, label, force, summary))
    return summary


def _updated(
    rows: list[dict[str, Any]],
    bad: set[int],
    found: dict[str, tuple[str, str]],
    label: str,
    force: bool,
    summary: TranscribeSummary,
) -> Any:
    for i, sample in enumerate(rows):
        summary.samples += 1
        if i in bad:  # listed in summary.bad_rows
            yield sample
            continue
        media = media_of(sample)
        if not (force or needs_transcript(sample)):
            summary.had_transcript += 1
            yield sample
        elif media is None:
            summary.no_media += 1
            yield sample
        elif media in found:
            text, lang = found[media]
            summary.transcribed += 1
            yield with_transcript(sample, text, model=label, language=lang)
        else:  # its media failed to decode: listed in summary.errors
            yield sample


def _default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
