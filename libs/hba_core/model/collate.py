"""HBA samples -> Qwen2.5-Omni Thinker inputs, with the official processor.

Public API (stable: the GRPO and BAM tools build on it):

- :class:`MediaSettings` - data root, frame rate, frame/pixel limits, audio limit;
- :func:`sample_messages` - the chat messages of one sample: text pieces and ``{"type": "video"}`` /
  ``{"type": "audio"}`` placeholders in the order of the ``<video>``/``<audio>`` tags of ``problem``;
- :func:`prepare_sample` - decode one sample's media (raises :class:`~hba_core.errors.MediaError`);
- :func:`encode_batch` - run the processor on prepared samples of one modality signature -> :class:`Batch`;
- :func:`answer_target` / :func:`target_labels` - the teacher-forcing target (answer + end token) and its
  ``lm_labels`` (only the target's tokens; tests/test_sft_gen.py checks the mask on the real processor);
- :class:`Collator` - ``samples -> Batch`` for a DataLoader (decoding runs in its workers); samples whose
  media cannot be decoded are logged, skipped and listed in ``Batch.skipped`` - never black frames.

Audio and video (``use_audio_in_video``) are decided per sample from its modality signature: a sample
whose signature has both ``video`` and ``audio`` gets the video's audio interleaved with its frames in
time (Qwen2.5-Omni's native layout, one placeholder at the ``<video>`` tag); the audio is the sample's
audio file when it has one (the release extracts the video's track), else the video's own track. Audio
longer than ``max_audio_seconds`` (default 30 s: the Whisper feature extractor's window) is cut to it
and counted in ``Batch.audio_cut`` - never silently. Each batch checks that the number of audio/video
placeholder tokens equals what the encoders will output.

>>> settings = MediaSettings(data_root="fixtures/data")                    # doctest: +SKIP
>>> batch = Collator(processor, settings, targets=True)(samples)          # doctest: +SKIP
>>> model(**batch.inputs)                                                 # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import torch

from hba_core import registry
from hba_core.errors import HbaError, InputError, MediaError
from hba_core.media import SAMPLE_RATE, decode_audio, resolve_media, sample_video_frames
from hba_core.media_settings import MediaSettings  # re-exported: `from hba_core.model.collate import MediaSettings`
from hba_core.samples import MODALITY_TAG

log = logging.getLogger(__name__)
IGNORE_INDEX = -100


@dataclass
class Prepared:
    """One sample with decoded media, ready for the processor."""

    id: str
    dataset: str
    task: str
    text: str  # chat-formatted prompt (+ target when training the decoder)
    target: str | None  # free-text target appended to ``text`` (teacher forcing)
    label_index: int  # index in the task head's labels; -1 for free-text samples
    videos: list[np.ndarray] = field(default_factory=list)  # (T, H, W, 3) uint8
    audios: list[np.ndarray] = field(default_factory=list)  # (n,) float32 16 kHz
    interleave: bool = False  # use_audio_in_video
    audio_cut: int = 0


@dataclass
class Batch:
    """Model inputs plus what the loss and the reports need. ``inputs`` go straight to the Thinker."""

    inputs: dict[str, Any]
    ids: list[str]
    datasets: list[str]
    tasks: list[str]
    label_index: torch.Tensor  # (B,) index into the task head, -1 where none
    lm_labels: torch.Tensor | None  # (B, T) target token ids, IGNORE_INDEX elsewhere
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason)
    audio_cut: int = 0
    # dataset -> {"video->frames": n, ...}: media a non-Omni backbone could not take (hba_core.model.generic)
    substitutions: dict[str, dict[str, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def n_tokens(self) -> int:
        return int(self.inputs["attention_mask"].sum()) if self.ids else 0

    def to(self, device: torch.device | str) -> Batch:
        moved = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in self.inputs.items()}
        labels = None if self.lm_labels is None else self.lm_labels.to(device)
        return Batch(
            moved,
            self.ids,
            self.datasets,
            self.tasks,
            self.label_index.to(device),
            labels,
            self.skipped,
            self.audio_cut,
            self.substitutions,
        )


@cache
def think_template() -> str:
    """The GRPO prompt template (App. B.2) as a ``str.format`` string: ``think_template().format(problem=...)``
    gives the problem followed by the <think>/\\boxed{} instruction (braces in the file are doubled)."""
    return resources.files("hba_core.rl").joinpath("templates/think.txt").read_text(encoding="utf-8").rstrip("\n")


def sample_messages(problem: str, *, interleave: bool) -> list[dict[str, Any]]:
    """One user turn: text pieces and media placeholders in the order of the tags in ``problem``.

    With ``interleave`` the ``<audio>`` tag is dropped: the audio rides inside the video placeholder.

    >>> sample_messages("<video>\\n<audio>\\nHi.", interleave=False)[0]["content"]
    [{'type': 'video'}, {'type': 'audio'}, {'type': 'text', 'text': 'Hi.'}]
    """
    content: list[dict[str, Any]] = []
    position = 0
    for match in MODALITY_TAG.finditer(problem):
        text = problem[position : match.start()].strip("\n")
        if text.strip():
            content.append({"type": "text", "text": text})
        kind = match.group(1)
        if not (interleave and kind == "audio"):
            content.append({"type": kind})
        position = match.end()
    rest = problem[position:].strip("\n")
    if rest.strip() or not content:
        content.append({"type": "text", "text": rest})
    return [{"role": "user", "content": content}]


def label_index(sample: dict[str, Any]) -> int:
    """The sample's class index in its task head (registry domain order), -1 for free-text tasks."""
    ds = registry.dataset(sample["dataset"])
    if ds.is_free_text:
        return -1
    label = sample.get("class_label") or registry.canonical_label(str(sample.get("answer", "")), ds.name)
    if label is None or label not in ds.task.domain.labels:
        raise InputError(
            sample.get("id", "?"),
            f"no {ds.name} label in class_label/answer ({sample.get('class_label')!r}); valid: {', '.join(ds.labels)}",
        )
    return ds.task.domain.labels.index(label)


def _audio(path: Any, settings: MediaSettings) -> tuple[np.ndarray, int]:
    limit = settings.max_audio_seconds
    # Decode a little past the limit so we know whether anything was cut.
    wave = decode_audio(path, max_seconds=None if limit is None else limit + 0.5)
    if limit is not None and wave.size > int(limit * SAMPLE_RATE):
        return wave[: int(limit * SAMPLE_RATE)], 1
    return wave, 0


def prepare_sample(
    sample: dict[str, Any],
    processor: Any,
    settings: MediaSettings,
    *,
    with_target: bool,
    template: str | None = None,
    every_answer: bool = False,
) -> Prepared:
    """Decode one sample's media and build its chat text. Raises MediaError for undecodable media.

    ``with_target`` appends the answer + end-of-turn token (:func:`answer_target`) for teacher forcing:
    free-text tasks only, or every sample with ``every_answer`` (hba-sft gen: a classification sample's
    answer is its label text); ``template="think"`` wraps the problem in the GRPO reasoning instruction.
    """
    ds = registry.dataset(sample["dataset"])
    signature = sample.get("modality_signature") or ""
    videos, audios = list(sample.get("videos") or []), list(sample.get("audios") or [])
    interleave = "video" in signature and "audio" in signature and bool(videos)
    where = sample.get("id", "?")

    def path(rel: str) -> Any:
        # A Parquet cell reference comes back as is (checked) and is decoded from the shard's bytes.
        return resolve_media(settings.data_root, rel, allow_outside=settings.allow_outside_root)

    problem = sample["problem"]
    if template == "think":
        problem = think_template().format(problem=problem)
    elif template is not None:
        raise InputError("--template", f"unknown template {template!r}; valid: think")
    tags = MODALITY_TAG.findall(problem)
    if tags.count("video") != len(videos) or (not interleave and tags.count("audio") != len(audios)):
        raise InputError(
            where,
            f"{tags.count('video')} <video> / {tags.count('audio')} <audio> tags but "
            f"{len(videos)} videos / {len(audios)} audios",
        )
    cut = 0
    frames: list[np.ndarray] = []
    waves: list[np.ndarray] = []
    try:
        for rel in videos:
            frames.append(
                sample_video_frames(
                    path(rel), fps=settings.fps, max_frames=settings.max_frames, max_side=settings.decode_side
                ).frames
            )
        sources = audios if (audios or not interleave) else videos  # interleave without a file: the video's track
        for rel in sources:
            wave, was_cut = _audio(path(rel), settings)
            waves.append(wave)
            cut += was_cut
    except MediaError as exc:
        raise MediaError(where, f"{exc}") from None
    if interleave and len(waves) != len(frames):
        raise InputError(where, f"{len(frames)} videos but {len(waves)} audio tracks to interleave")
    text = processor.apply_chat_template(
        sample_messages(problem, interleave=interleave), add_generation_prompt=True, tokenize=False
    )
    target = None
    if with_target and (ds.is_free_text or every_answer):
        target = answer_target(sample, processor.tokenizer.eos_token)  # <|im_end|>: the template's end of turn
        text += target
    return Prepared(
        id=where,
        dataset=ds.name,
        task=ds.task.code,
        text=text,
        target=target,
        label_index=label_index(sample),
        videos=frames,
        audios=waves,
        interleave=interleave,
        audio_cut=cut,
    )


def encode_batch(prepared: list[Prepared], processor: Any, settings: MediaSettings) -> Batch:
    """Run the processor on samples of one modality signature (left padding) and check placeholder counts."""
    if len({p.interleave for p in prepared}) > 1:
        raise ValueError("a batch mixes interleaved and separate audio: batches must share a modality signature")
    interleave = prepared[0].interleave
    videos = [v for p in prepared for v in p.videos]
    audios = [a for p in prepared for a in p.audios]
    kwargs: dict[str, Any] = {}
    if videos:
        kwargs["videos"] = videos
        kwargs["videos_kwargs"] = {
            "fps": settings.fps,
            "do_sample_frames": False,
            "size": {"shortest_edge": settings.min_pixels, "longest_edge": settings.max_pixels},
        }
    if audios:
        kwargs["audio"] = audios
    if interleave:
        kwargs["load_audio_from_video"] = True
        kwargs["audio_from_video_indices"] = list(range(len(videos)))
    encoded = processor(text=[p.text for p in prepared], padding=True, return_tensors="pt", **kwargs)
    inputs = dict(encoded)
    if "video_second_per_grid" in inputs:
        inputs["video_second_per_grid"] = torch.as_tensor(inputs["video_second_per_grid"], dtype=torch.float32)
    inputs["use_audio_in_video"] = interleave
    check_placeholders(inputs, processor)
    lm_labels = None
    if any(p.target is not None for p in prepared):
        lm_labels = target_labels(
            inputs["input_ids"],
            inputs["attention_mask"],
            [p.target for p in prepared],
            processor.tokenizer,
            [p.id for p in prepared],
        )
    return Batch(
        inputs=inputs,
        ids=[p.id for p in prepared],
        datasets=[p.dataset for p in prepared],
        tasks=[p.task for p in prepared],
        label_index=torch.tensor([p.label_index for p in prepared]),
        lm_labels=lm_labels,
        audio_cut=sum(p.audio_cut for p in prepared),
    )


def answer_target(sample: dict[str, Any], end_token: str) -> str:
    """What the decoder is taught to write for a sample: its answer, then the end-of-turn token.

    A free-text sample's answer is its ``answer``; a classification sample's is its label text (``answer``,
    else ``class_label``). ``end_token`` is the token the chat template closes an assistant turn with
    (Qwen2.5-Omni: ``<|im_end|>``, its tokenizer's EOS; Gemma 3: ``<end_of_turn>``, not its EOS): a model
    trained on it learns to stop - the reference's mask never trains it (docs/reference.md).

    >>> answer_target({"answer": "anger", "class_label": "anger"}, "<|im_end|>")
    'anger<|im_end|>'
    """
    answer = sample.get("answer") or sample.get("class_label") or ""
    return str(answer) + end_token


def target_labels(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    targets: list[str | None],
    tokenizer: Any,
    ids: list[str] | None = None,
) -> torch.Tensor:
    """Teacher-forcing labels (B, T): each row's target token ids where they sit, IGNORE_INDEX elsewhere.

    A target was appended to its row's text, so its tokens are the row's last real tokens (found from
    ``attention_mask``: left or right padding alike). Prompt, padding and rows without a target
    (``None``) are IGNORE_INDEX. Labels sit on the target tokens themselves; the shift to "position t
    predicts token t+1" happens once, in :func:`hba_core.model.omnisapiens.lm_loss_sum`, so the last
    prompt token predicts the first answer token and the last answer token predicts the end token.
    """
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    for row, target in enumerate(targets):
        if target is None:
            continue
        name = ids[row] if ids else f"row {row}"
        tokens = tokenizer(target, add_special_tokens=False)["input_ids"]
        real = attention_mask[row].nonzero().flatten()  # positions of the row's real tokens
        end = int(real[-1]) + 1
        start = end - len(tokens)
        if int(real[-1] - real[0]) + 1 != len(real) or start <= int(real[0]):
            raise ValueError(f"{name}: the row's real tokens are not one run ending in a {len(tokens)}-token target")
        if input_ids[row, start:end].tolist() != tokens:
            raise ValueError(f"{name}: target tokens do not tokenise the same inside the prompt")
        labels[row, start:end] = torch.tensor(tokens)
    return labels


def check_placeholders(inputs: dict[str, Any], processor: Any) -> None:
    """Placeholder tokens in ``input_ids`` must equal the encoders' output lengths (audio and video)."""
    from transformers.models.qwen2_5_omni.processing_qwen2_5_omni import _get_feat_extract_output_lengths

    ids = inputs["input_ids"]
    n_audio = int((ids == processor.audio_token_id).sum())
    expected_audio = 0
    if "feature_attention_mask" in inputs:
        expected_audio = int(_get_feat_extract_output_lengths(inputs["feature_attention_mask"].sum(-1)).sum())
    n_video = int((ids == processor.video_token_id).sum())
    expected_video = 0
    if "video_grid_thw" in inputs:
        merge = processor.video_processor.merge_size
        expected_video = int(inputs["video_grid_thw"].prod(-1).sum()) // (merge * merge)
    if n_audio != expected_audio or n_video != expected_video:
        raise ValueError(
            f"placeholder mismatch: {n_audio} audio tokens for {expected_audio} encoder outputs, "
            f"{n_video} video tokens for {expected_video}"
        )


class Collator:
    """``samples -> Batch`` for a DataLoader's ``collate_fn``: decode, skip (and report) bad media, encode."""

    def __init__(
        self,
        processor: Any,
        settings: MediaSettings,
        *,
        targets: bool,
        template: str | None = None,
        every_answer: bool = False,
    ):
        self.processor, self.settings, self.targets, self.template = processor, settings, targets, template
        self.every_answer = every_answer  # targets for classification samples too (hba-sft gen)

    def __call__(self, samples: list[dict[str, Any]]) -> Batch:
        prepared: list[Prepared] = []
        skipped: list[tuple[str, str]] = []
        for sample in samples:
            try:
                prepared.append(
                    prepare_sample(
                        sample,
                        self.processor,
                        self.settings,
                        with_target=self.targets,
                        template=self.template,
                        every_answer=self.every_answer,
                    )
                )
            except HbaError as exc:
                log.warning("skipping sample %s: %s", sample.get("id", "?"), exc)
                skipped.append((str(sample.get("id", "?")), str(exc)))
        if not prepared:
            return Batch({}, [], [], [], torch.zeros(0, dtype=torch.long), None, skipped)
        batch = encode_batch(prepared, self.processor, self.settings)
        batch.skipped = skipped
        return batch
