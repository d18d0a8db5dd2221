"""Any backbone other than Qwen2.5-Omni: load it with its auto class, feed it what it can take, count the rest.

A sample's ``<video>``, ``<audio>`` and ``<image>`` tags become the backbone's own media parts when it
takes that modality (:mod:`hba_core.model.backbones` says which). When it does not, the sample is answered
from what it can take, and the substitution is counted per dataset (:class:`Substitutions`), never silent:

- a video for an image model: ``frames_per_video`` frames spread over the clip, as images (``video->frames``);
- a video for an audio model (Qwen2-Audio): its audio track (``video->audio``): the sample's own audio
  file when it has one (the release extracts the video's track, which the ``<audio>`` tag already
  brings), else the video file's audio stream; a video without a track: the transcript
  (``video->transcript``), else left out (``video->dropped``);
- a video for a text-only model: left out (``video->dropped``);
- audio for a model without audio: the transcript, which Atlas prompts already carry when the source has
  one (``audio->transcript``; one taken from ``metadata.transcript`` is put in the prompt), else left out
  (``audio->dropped``);
- an image for a model without images (text-only, audio): left out (``image->dropped``).

Audio goes to the processor at its feature extractor's sampling rate, cut to the extractor's window
(``chunk_length``, 30 s for Qwen2-Audio) or ``max_audio_seconds`` if shorter, and counted in
``Batch.audio_cut`` like the Omni collator's.

The batches are :class:`~hba_core.model.collate.Batch` objects, so generation (``omnisapiens.generate``),
pooling of ``hidden_states[-2]``, the prediction rows and SFT (``targets=True``: ``lm_labels`` on the answer and
the backbone's end-of-turn token, :func:`end_of_turn`) are the same code for every backbone.

>>> subs = Substitutions()
>>> subs.add("cremad", "audio->transcript"); subs.add("cremad", "audio->transcript")
>>> subs.as_dict()
{'cremad': {'audio->transcript': 2}}
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from hba_core import registry
from hba_core.errors import InputError, MediaError
from hba_core.media import SAMPLE_RATE, decode_audio, open_media, resolve_media, sample_video_frames
from hba_core.model.backbones import Backbone, backbone_for
from hba_core.model.collate import Batch, MediaSettings, answer_target, label_index, target_labels, think_template
from hba_core.samples import MODALITY_TAG
from hba_core.substitutions import Substitutions

log = logging.getLogger(__name__)


@dataclass
class GenericModel:
    """A loaded non-Omni backbone: the model, its processor (or tokenizer) and its adapter."""

    name: str
    backbone: Backbone
    model: Any
    processor: Any

    @property
    def tokenizer(self) -> Any:
        return getattr(self.processor, "tokenizer", self.processor)


def load_generic_processor(local_dir: str, config: dict[str, Any]) -> tuple[Any, Backbone]:
    """(processor - a causal LM's tokenizer -, backbone it refines) of a non-Omni model directory, or of an
    hba checkpoint that saved it; ``config`` is the backbone's ``config.json``. Left padding, a pad token."""
    import transformers

    backbone = backbone_for(config)
    if backbone.adapter == "omni_thinker":
        raise ValueError("Qwen2.5-Omni loads through hba_core.model.backbone, not the generic path")
    if backbone.adapter == "causal_lm":
        processor = transformers.AutoTokenizer.from_pretrained(local_dir)
    else:
        processor = transformers.AutoProcessor.from_pretrained(local_dir)
        backbone = backbone_for(config, processor)
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = "left"  # generation continues every row at the same position
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor, backbone


def load_generic(local_dir: str, config: dict[str, Any], *, name: str, dtype: str, device: str | None) -> GenericModel:
    """Load a non-Omni model directory through the auto class its ``config.json`` names."""
    import transformers

    processor, backbone = load_generic_processor(local_dir, config)
    auto = getattr(transformers, backbone.auto_class)
    model = auto.from_pretrained(local_dir, dtype=getattr(torch, dtype))
    if device:
        model.to(device)
    model.eval()
    return GenericModel(name, backbone, model, processor)


def end_of_turn(processor: Any, *, plain_strings: bool = False) -> str:
    """The token that closes an assistant turn in the backbone's chat template, read off the template itself
    (``<|im_end|>`` in ChatML - Qwen2.5-VL, Qwen2 -, ``<end_of_turn>`` in Gemma's); the tokenizer's EOS when
    there is no template or no special token right after the answer. SFT targets end with it, as the Omni
    collator's end with ``<|im_end|>`` (:func:`hba_core.model.collate.answer_target`).

    >>> from transformers import AutoTokenizer                                          # doctest: +SKIP
    >>> end_of_turn(AutoTokenizer.from_pretrained("google/gemma-3-4b-it"), plain_strings=True)  # doctest: +SKIP
    '<end_of_turn>'

    ``plain_strings``: the template takes message contents as strings (a causal LM's tokenizer).
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    if not getattr(processor, "chat_template", None):
        return tokenizer.eos_token
    mark = "HBAANSWERMARK"

    def turn(role: str, text: str) -> dict[str, Any]:
        return {"role": role, "content": text if plain_strings else [{"type": "text", "text": text}]}

    text = processor.apply_chat_template([turn("user", "question"), turn("assistant", mark)], tokenize=False)
    at = text.find(mark)
    if at < 0:
        return tokenizer.eos_token
    first = tokenizer(text[at + len(mark) :].lstrip(), add_special_tokens=False)["input_ids"][:1]
    added = tokenizer.added_tokens_decoder.get(first[0]) if first else None
    return str(added) if added is not None and added.special else tokenizer.eos_token


def _has_audio_track(path: Any) -> bool:
    with open_media(path) as container:
        return bool(container.streams.audio)


def _frames_as_images(frames: np.ndarray, count: int) -> list[np.ndarray]:
    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    return [frames[i] for i in picks]


@dataclass
class _Prepared:
    id: str
    dataset: str
    task: str
    text: str
    label_index: int
    target: str | None = None  # answer + end-of-turn token appended to ``text`` (teacher forcing)
    images: list[np.ndarray] = field(default_factory=list)
    videos: list[np.ndarray] = field(default_factory=list)
    audios: list[np.ndarray] = field(default_factory=list)
    audio_cut: int = 0


class GenericCollator:
    """``samples -> Batch`` for a non-Omni backbone; each batch carries its substitution counts
    (``Batch.substitutions``), so they survive DataLoader workers.

    ``targets`` / ``every_answer`` as in :class:`~hba_core.model.collate.Collator` (SFT): the answer and the
    backbone's end-of-turn token (:func:`end_of_turn`) are appended to free-text samples (every sample with
    ``every_answer``) and ``Batch.lm_labels`` holds exactly those tokens, IGNORE_INDEX elsewhere.
    """

    def __init__(
        self,
        gm: GenericModel,
        settings: MediaSettings,
        *,
        template: str | None = None,
        frames_per_video: int = 4,
        targets: bool = False,
        every_answer: bool = False,
    ):
        self.gm, self.settings, self.template, self.frames_per_video = gm, settings, template, frames_per_video
        self.targets, self.every_answer = targets, every_answer
        self.end = end_of_turn(gm.processor, plain_strings=gm.backbone.adapter == "causal_lm")

    def _path(self, rel: str) -> Any:
        return resolve_media(self.settings.data_root, rel, allow_outside=self.settings.allow_outside_root)

    @property
    def _features(self) -> Any:
        return getattr(self.gm.processor, "feature_extractor", None)

    @property
    def sampling_rate(self) -> int:
        """The rate the processor's feature extractor expects audio at (16 kHz for Whisper features)."""
        return int(getattr(self._features, "sampling_rate", None) or SAMPLE_RATE)

    def _wave(self, rel: str) -> tuple[np.ndarray, int]:
        """(mono wave at :attr:`sampling_rate`, 1 if it was cut to the window else 0)."""
        limits = [self.settings.max_audio_seconds, getattr(self._features, "chunk_length", None)]
        limit = min((float(x) for x in limits if x), default=None)
        rate = self.sampling_rate
        # Decode a little past the limit so we know whether anything was cut.
        wave = decode_audio(self._path(rel), sample_rate=rate, max_seconds=None if limit is None else limit + 0.5)
        if limit is not None and wave.size > int(limit * rate):
            return wave[: int(limit * rate)], 1
        return wave, 0

    def prepare(self, sample: dict[str, Any], subs: Substitutions) -> _Prepared:
        ds = registry.dataset(sample["dataset"])
        takes = self.gm.backbone.takes
        problem = sample["problem"]
        if self.template == "think":
            problem = think_template().format(problem=problem)
        elif self.template is not None:
            raise InputError("--template", f"unknown template {self.template!r}; valid: think")
        media = {kind: list(sample.get(f"{kind}s") or []) for kind in ("video", "audio", "image")}
        metadata = sample.get("metadata") or {}
        transcript = metadata.get("transcript") if isinstance(metadata, dict) else None
        prepared = _Prepared(sample.get("id", "?"), ds.name, ds.task.code, "", label_index(sample))
        content: list[dict[str, Any]] = []

        def instead(kind: str) -> None:  # ``kind`` cannot be taken: the transcript, else nothing
            if transcript and transcript in problem:
                subs.add(ds.name, f"{kind}->transcript")  # the prompt carries it already
            elif transcript:
                if not any(p.get("text") == f"Transcript: {transcript}" for p in content):
                    content.append({"type": "text", "text": f"Transcript: {transcript}"})
                subs.add(ds.name, f"{kind}->transcript")
            else:
                subs.add(ds.name, f"{kind}->dropped")

        def add_audio(rel: str) -> None:
            wave, cut = self._wave(rel)
            prepared.audios.append(wave)
            prepared.audio_cut += cut
            # Qwen2-Audio's template finds an audio part by its ``audio`` key, not by its type
            content.append({"type": "audio", "audio": rel})

        position = 0
        seen = Counter[str]()
        s = self.settings
        for match in MODALITY_TAG.finditer(problem):
            text = problem[position : match.start()].strip("\n")
            if text.strip():
                content.append({"type": "text", "text": text})
            position = match.end()
            kind = match.group(1)
            files = media[kind]
            if seen[kind] >= len(files):
                raise InputError(prepared.id, f"more <{kind}> tags than {kind}s ({len(files)})")
            rel = files[seen[kind]]
            seen[kind] += 1
            if kind == "video":
                if not (takes("video") or takes("image")):
                    if not takes("audio"):
                        subs.add(ds.name, "video->dropped")
                    elif media["audio"]:  # an audio LM: the clip's sound, which its <audio> tag brings
                        subs.add(ds.name, "video->audio")
                    elif _has_audio_track(self._path(rel)):
                        add_audio(rel)
                        subs.add(ds.name, "video->audio")
                    else:
                        instead("video")
                    continue
                frames = sample_video_frames(
                    self._path(rel), fps=s.fps, max_frames=s.max_frames, max_side=s.decode_side
                ).frames
                if takes("video"):
                    prepared.videos.append(frames)
                    content.append({"type": "video"})
                else:
                    for frame in _frames_as_images(frames, self.frames_per_video):
                        prepared.images.append(frame)
                        content.append({"type": "image"})
                    subs.add(ds.name, "video->frames")
            elif kind == "audio":
                if takes("audio"):
                    add_audio(rel)
                else:
                    instead("audio")
            elif takes("image"):  # the Atlas has no image samples today; a still decodes as a one-frame video
                prepared.images.append(
                    sample_video_frames(self._path(rel), max_frames=1, max_side=s.decode_side).frames[0]
                )
                content.append({"type": "image"})
            else:
                subs.add(ds.name, "image->dropped")
        rest = problem[position:].strip("\n")
        if rest.strip() or not content:
            content.append({"type": "text", "text": rest})
        messages = [{"role": "user", "content": content}]
        if self.gm.backbone.adapter == "causal_lm":  # a tokenizer's template takes plain strings
            messages = [{"role": "user", "content": "\n".join(p["text"] for p in content if p["type"] == "text")}]
        template_owner = self.gm.processor
        if getattr(template_owner, "chat_template", None):
            prepared.text = template_owner.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        else:  # a base LM without a chat template reads the prompt as it is
            prepared.text = "\n".join(p["text"] for p in content if p["type"] == "text") + "\n"
        if self.targets and (ds.is_free_text or self.every_answer):
            prepared.target = answer_target(sample, self.end)
            prepared.text += prepared.target
        return prepared

    def encode(self, prepared: list[_Prepared]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if any(p.images for p in prepared):
            kwargs["images"] = [p.images for p in prepared]
        if any(p.videos for p in prepared):
            kwargs["videos"] = [v for p in prepared for v in p.videos]
        if any(p.audios for p in prepared):
            kwargs["audio"] = [a for p in prepared for a in p.audios]
            kwargs["sampling_rate"] = self.sampling_rate
        texts = [p.text for p in prepared]
        if self.gm.backbone.adapter == "causal_lm":
            encoded = self.gm.processor(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        else:
            encoded = self.gm.processor(text=texts, padding=True, return_tensors="pt", **kwargs)
        inputs = dict(encoded)
        if self.gm.backbone.adapter == "causal_lm":
            inputs.pop("token_type_ids", None)  # some tokenizers return them; causal LMs' forward refuses them
        return inputs

    def __call__(self, samples: list[dict[str, Any]]) -> Batch:
        subs = Substitutions()
        prepared: list[_Prepared] = []
        skipped: list[tuple[str, str]] = []
        for sample in samples:
            try:
                prepared.append(self.prepare(sample, subs))
            except MediaError as exc:
                log.warning("skipping %s: %s", sample.get("id", "?"), exc)
                skipped.append((sample.get("id", "?"), str(exc)))
        inputs = self.encode(prepared) if prepared else {}
        lm_labels = None
        if any(p.target is not None for p in prepared):
            lm_labels = target_labels(
                inputs["input_ids"],
                inputs["attention_mask"],
                [p.target for p in prepared],
                self.gm.tokenizer,
                [p.id for p in prepared],
            )
        return Batch(
            inputs=inputs,
            ids=[p.id for p in prepared],
            datasets=[p.dataset for p in prepared],
            tasks=[p.task for p in prepared],
            label_index=torch.tensor([p.label_index for p in prepared], dtype=torch.long),
            lm_labels=lm_labels,
            skipped=skipped,
            audio_cut=sum(p.audio_cut for p in prepared),
            substitutions=subs.as_dict(),
        )
