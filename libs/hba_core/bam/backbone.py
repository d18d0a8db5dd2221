"""The frozen backbone of a BAM run, loaded only when a pooled vector has to be computed.

hba-bam trains on pooled h_penult vectors that it caches by checkpoint fingerprint x sample key. When
every vector a run needs is cached, all it still needs from the checkpoint is in small files: the label
space (config.json), the task heads (heads.safetensors) and the hidden size (the heads' width). Loading
the Thinker is then skipped; on the fixture it was half of a cached re-run.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch


class LazyBackbone:
    """The checkpoint's frozen model and processor, loaded on first use.

    A re-run whose pooled vectors are all cached needs only what the checkpoint's files say (label
    space, task heads, hidden size), so it never pays for loading the Thinker (half of such a run).
    """

    def __init__(self, checkpoint: str):
        from hba_core.errors import InputError
        from hba_core.model.checkpoint import CONFIG, is_checkpoint, require_omni

        if not is_checkpoint(checkpoint):
            raise InputError(
                str(checkpoint), "not an hba checkpoint (no config.json with a 'tool' field); pass hba-sft's output"
            )
        self.checkpoint = checkpoint
        self.config = json.loads((Path(checkpoint) / CONFIG).read_text())
        require_omni(checkpoint, self.config, "hba-bam")  # its collation and Δh hooks are the Thinker's
        self.seconds_loading = 0.0
        self._model: Any = None
        self._processor: Any = None
        self._heads: dict[str, torch.Tensor] | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> Any:
        if self._model is None:
            from hba_core.model.checkpoint import load_checkpoint, load_checkpoint_processor

            start = time.perf_counter()
            model, config = load_checkpoint(self.checkpoint)
            for p in model.parameters():
                p.requires_grad_(False)
            self._processor = load_checkpoint_processor(self.checkpoint, config)
            self._model = model
            self.seconds_loading = round(time.perf_counter() - start, 3)
        return self._model

    @property
    def processor(self) -> Any:
        self.model  # noqa: B018 - loads both
        return self._processor

    @property
    def label_space(self) -> dict[str, list[str]]:
        return self.config["label_space"]

    def _saved_heads(self) -> dict[str, torch.Tensor]:
        if self._heads is None:
            from safetensors.torch import load_file

            self._heads = load_file(str(Path(self.checkpoint) / "heads.safetensors"))
        return self._heads

    def head_state(self, task: str) -> dict[str, torch.Tensor] | None:
        """``task``'s head (weight, bias) as saved in heads.safetensors (what load_checkpoint loads), or None.

        A checkpoint whose heads were never trained (hba-sft gen) is refused: BAM's Δh would be fitted to
        randomly initialised heads.
        """
        if not self.config.get("heads_trained", True):
            from hba_core.errors import InputError

            raise InputError(
                str(self.checkpoint),
                f"its task heads were never trained (an hba-sft gen model), so BAM cannot adapt the {task} head; "
                "start from a cls or joint checkpoint",
            )
        prefix = f"{task}."
        state = {k.removeprefix(prefix): v for k, v in self._saved_heads().items() if k.startswith(prefix)}
        return state or None

    @property
    def hidden_size(self) -> int:
        if self._model is None:
            weights = [v for k, v in self._saved_heads().items() if k.endswith(".weight")]
            if weights:
                return int(weights[0].shape[1])  # every head is Linear(hidden, n_labels)
        return int(self.model.text_config.hidden_size)
