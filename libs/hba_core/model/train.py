"""The OmniSapiens SFT recipe: setup -> train -> validate/promote -> cleanup, in one readable loop.

Stages (App. B.1): ``cls`` trains LoRA + task heads on the classification datasets; ``qa`` freezes
backbone and heads and trains only the LM head on the free-text datasets; ``joint`` trains all three on
L = L_cls + L_qa. Defaults are App. C.2: AdamW, lr 1e-4, cosine schedule with 50 warm-up steps,
effective batch 512 (= micro-batch x processes x accumulation), 5 epochs, keep the checkpoint with the
lowest validation cross-entropy (promoted to ``RUN/best/`` automatically).

Runs single-process, under ``torchrun`` or under ``deepspeed`` (ZeRO-2/3 configs in ``deepspeed/``; any
multi-process run goes through DeepSpeed; gloo on CPU). ``resume=True`` continues from ``RUN/last/``:
model, optimiser, scheduler, data position and RNG, to the same result as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hba_core import registry
from hba_core.errors import InputError
from hba_core.model import checkpoint as ckpt
from hba_core.model.backbone import LoraSettings, add_lora, load_processor, load_thinker
from hba_core.model.batching import make_loader, plan_batches, shard_batches
from hba_core.model.collate import Batch, Collator, MediaSettings
from hba_core.model.distributed import deepspeed_config, init_distributed, shutdown_distributed
from hba_core.model.heads import default_label_space
from hba_core.model.omnisapiens import OmniSapiens
from hba_core.samples import iter_samples

STAGES = ("cls", "qa", "joint")


@dataclass
class SftOptions:
    """Every hyper-parameter of an SFT run (App. C.2 defaults); one object = API + CLI + config file."""

    stage: str  # cls | qa | joint
    samples: str  # JSONL with a 'split' field (train / val)
    out: str  # run directory
    data_root: str = "."
    model: str = "Qwen/Qwen2.5-Omni-7B"
    init: str | None = None  # continue from an hba checkpoint
    datasets: list[str] | None = None
    exclude: list[str] = field(default_factory=list)
    lr: float = 1e-4
    warmup_steps: int = 50
    epochs: float = 5
    batch_size: int = 512  # effective batch = micro_batch x processes x accumulation
    micro_batch: int = 2
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    dtype: str = "float32"  # float32 (as in the paper) or bfloat16 (several times faster on GPUs)
    gradient_checkpointing: bool = True
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    fps: float = 2.0
    max_frames: int = 32
    max_pixels: int = 256 * 28 * 28
    max_audio_seconds: float = 30.0
    workers: int = 2
    seed: int = 0
    save_every: int = 50  # optimizer steps between resumable states in RUN/last/
    eval_every: int = 0  # optimizer steps between validations; 0 = at the end of each epoch
    max_steps: int | None = None  # stop after this many optimizer steps (smoke runs); resumable
    deepspeed: str | None = None  # zero2 | zero3 | path to a DeepSpeed JSON config
    resume: bool = False
    report_to: str = "none"  # none | tensorboard | wandb

    def media(self) -> MediaSettings:
        return MediaSettings(
            data_root=self.data_root,
            fps=self.fps,
            max_frames=self.max_frames,
            max_pixels=self.max_pixels,
            max_audio_seconds=self.max_audio_seconds,
        )


# ------------------------------------------------------------------ setup pieces


def select_samples(
    path: str,
    stage: str,
    datasets: list[str] | None,
    exclude: list[str],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, val) samples of the stage's datasets: classification for cls, free text for qa, both for joint."""
    for name in [*(datasets or []), *exclude]:
        registry.dataset(name)  # unknown names fail with the valid ones
    train, val = [], []
    for line, sample in iter_samples(path):
        ds = registry.dataset(sample["dataset"])
        if datasets and ds.name not in datasets or ds.name in exclude:
            continue
        if stage == "cls" and ds.is_free_text or stage == "qa" and not ds.is_free_text:
            continue
        split = sample.get("split")
        if split is None:
            raise InputError(
                f"{path}:{line}",
                f"sample {sample['id']} has no 'split' field; hba-sft reads train "
                "and val samples from one file with split = train / val / test",
            )
        (train if split == "train" else val if split in ("val", "validation") else []).append(sample)
    if not val:
        raise InputError(
            path,
            f"no validation samples (split 'val') for stage {stage}: the best checkpoint is "
            "chosen by validation cross-entropy",
        )
    if not train:
        raise InputError(
            path,
            f"no training samples for stage {stage} (split 'train', datasets "
            f"{datasets or 'all'} minus {exclude or 'none'})",
        )
    return train, val


def set_trainable(model: OmniSapiens, stage: str) -> list[torch.nn.Parameter]:
    """Freeze all but what the stage trains: LoRA + heads (cls), LM head (qa), all three (joint)."""
    for name, p in model.named_parameters():
        lora = "lora_" in name
        p.requires_grad = stage in ("cls", "joint") and (lora or name.startswith("heads."))
    if stage in ("qa", "joint"):
        model.lm_head().weight.requires_grad = True
    return [p for p in model.parameters() if p.requires_grad]


def cosine_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``total``."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_model(opts: SftOptions) -> tuple[OmniSapiens, Any]:
    """(model, processor): from ``opts.init`` (an hba checkpoint) or a fresh LoRA + heads on ``opts.model``."""
    if opts.init:
        model, config = ckpt.load_checkpoint(opts.init, dtype=opts.dtype, trainable=True, base_model=None)
        return model, ckpt.load_checkpoint_processor(opts.init, config)
    thinker = load_thinker(opts.model, dtype=opts.dtype)
    torch.manual_seed(opts.seed)  # heads initialise identically on every rank and every run
    thinker = add_lora(thinker, LoraSettings(opts.lora_r, opts.lora_alpha, opts.lora_dropout))
    return OmniSapiens(thinker, default_label_space()), load_processor(opts.model)


# ------------------------------------------------------------------ the run


@dataclass
class Progress:
    """What a resumed run needs besides the weights: where it is and what it has seen."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    micro: int = 0  # micro-batches done in this epoch (this rank)
    best_val: float = float("inf")
    skipped: int = 0
    audio_cut: int = 0
    samples: int = 0


class Trainer:
    """Holds the pieces of one run; :func:`run_sft` drives it. Not meant for subclassing."""

    def __init__(self, opts: SftOptions):
        self.opts, self.dist = opts, init_distributed()
        self.run_dir = Path(opts.out)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.train_samples, self.val_samples = select_samples(opts.samples, opts.stage, opts.datasets, opts.exclude)
        per_step = opts.micro_batch * self.dist.world_size
        if opts.batch_size % per_step:
            raise InputError(
                "--batch-size",
                f"{opts.batch_size} is not a multiple of micro-batch x processes "
                f"({opts.micro_batch} x {self.dist.world_size})",
            )
        self.accumulation = opts.batch_size // per_step
        self.model, self.processor = build_model(opts)
        self.trainable = set_trainable(self.model, opts.stage)
        if opts.gradient_checkpointing:
            self.model.thinker.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.autocast = opts.dtype == "bfloat16" and not opts.deepspeed and self.dist.world_size == 1
        if self.autocast:  # bf16 weights, fp32 trainable parameters + optimizer, bf16 matmuls
            for p in self.trainable:
                p.data = p.data.float()
        self.model.heads.to(torch.float32)
        self.model.to(self.dist.device)
        n_batches = len(plan_batches(self.train_samples, opts.micro_batch, seed=opts.seed, epoch=0))
        self.steps_per_epoch = max(1, n_batches // self.dist.world_size // self.accumulation)
        self.total_steps = max(1, math.ceil(opts.epochs * self.steps_per_epoch))
        optimizer = torch.optim.AdamW(self.trainable, lr=opts.lr, weight_decay=opts.weight_decay)
        scheduler = cosine_schedule(optimizer, opts.warmup_steps, self.total_steps)
        self.engine = None
        if opts.deepspeed or self.dist.world_size > 1:
            import deepspeed

            config = deepspeed_config(
                opts.deepspeed or "zero2",
                micro_batch=opts.micro_batch,
                accumulation=self.accumulation,
                max_grad_norm=opts.max_grad_norm,
                dtype=opts.dtype,
            )
            self.engine, optimizer, _, scheduler = deepspeed.initialize(
                model=self.model, optimizer=optimizer, lr_scheduler=scheduler, config=config
            )
        self.optimizer, self.scheduler = optimizer, scheduler
        self.progress = Progress()
        self.collate = Collator(self.processor, opts.media(), targets=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"

    # ---------------------------------------------------------- state

    def save_state(self) -> None:
        """RUN/last/: trainable weights, optimizer, scheduler, progress and RNG (atomic per file set)."""
        state = {"progress": asdict(self.progress), "torch_rng": torch.get_rng_state()}
        if self.engine is not None:
            self.engine.save_checkpoint(str(self.run_dir / "last"), tag="state", client_state=state)
            # The client state is rank 0's; every rank keeps its own RNG (dropout masks differ per rank).
            rng = self.run_dir / "last" / f"rng-rank{self.dist.rank}.pt"
            torch.save(torch.get_rng_state(), rng.with_suffix(".tmp"))
            os.replace(rng.with_suffix(".tmp"), rng)
            return
        if not self.dist.main:
            return
        tmp = self.run_dir / ".last.tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        trainable = {n: p.detach().cpu() for n, p in self.model.named_parameters() if p.requires_grad}
        torch.save(
            {
                **state,
                "params": trainable,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            },
            tmp / "state.pt",
        )
        final = self.run_dir / "last"
        if final.exists():
            os.replace(tmp / "state.pt", final / "state.pt")
            tmp.rmdir()
        else:
            tmp.rename(final)

    def load_state(self) -> None:
        last = self.run_dir / "last"
        if self.engine is not None:
            _, client = self.engine.load_checkpoint(str(last), tag="state")
            if client is None:
                raise InputError(str(last), "no resumable state; run without --resume")
            state = client
            rng = last / f"rng-rank{self.dist.rank}.pt"
            state["torch_rng"] = torch.load(rng, weights_only=True) if rng.exists() else state["torch_rng"]
        else:
            if not (last / "state.pt").exists():
                raise InputError(str(last), "no resumable state; run without --resume")
            state = torch.load(last / "state.pt", weights_only=True)
            params = dict(self.model.named_parameters())
            with torch.no_grad():
                for name, value in state["params"].items():
                    params[name].copy_(value)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
        self.progress = Progress(**state["progress"])
        torch.set_rng_state(state["torch_rng"])
        if self.dist.main and self.metrics_path.exists():  # drop records past the resumed step (and a torn line)
            kept = []
            for line in self.metrics_path.read_text().splitlines(keepends=True):
                if not line.endswith("\n"):
                    break
                if json.loads(line).get("step", 0) <= self.progress.step:
                    kept.append(line)
            self.metrics_path.write_text("".join(kept))

    # ---------------------------------------------------------- steps

    def log(self, record: dict[str, Any]) -> None:
        if self.dist.main:
            with open(self.metrics_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def forward(self, batch: Batch) -> Any:
        cls, lm = self.opts.stage in ("cls", "joint"), self.opts.stage in ("qa", "joint")
        context = (
            torch.autocast(self.dist.device.type, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        )
        with context:
            return (self.engine or self.model)(batch, cls=cls, lm=lm)

    def micro_step(self, batch: Batch, *, last_in_epoch: bool) -> tuple[Any, bool]:
        """Forward + backward of one micro-batch; returns (losses, whether the optimizer stepped)."""
        losses = self.forward(batch.to(self.dist.device))
        if self.engine is not None:
            self.engine.backward(losses.total)
            boundary = self.engine.is_gradient_accumulation_boundary()
            self.engine.step()
            return losses, boundary
        (losses.total / self.accumulation).backward()
        if (self.progress.micro + 1) % self.accumulation and not last_in_epoch:
            return losses, False
        torch.nn.utils.clip_grad_norm_(self.trainable, self.opts.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return losses, True

    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        """Validation CE (heads CE + LM CE per token, as the stage trains) and per-dataset accuracy/CE."""
        from hba_core.model.evaluate import validation_metrics

        self.model.eval()
        metrics = validation_metrics(self, self.val_samples)
        self.model.train()
        return metrics

    def save_best(self, metrics: dict[str, Any]) -> None:
        from hba_core.model.evaluate import gather_for_save

        with gather_for_save(self):
            if self.dist.main:
                ckpt.save_checkpoint(
                    self.model,
                    self.run_dir / "best",
                    self.config(),
                    processor=self.processor,
                    lm_head_trained=self.opts.stage in ("qa", "joint") or self._init_lm_head(),
                    metrics=metrics,
                )

    def _init_lm_head(self) -> bool:
        if not self.opts.init:
            return False
        return bool(json.loads((Path(self.opts.init) / ckpt.CONFIG).read_text()).get("lm_head_trained"))

    def config(self) -> dict[str, Any]:
        o = self.opts
        base = o.model
        if o.init:
            base = json.loads((Path(o.init) / ckpt.CONFIG).read_text())["base_model"]
        names = sorted({s["dataset"] for s in self.train_samples})
        return ckpt.run_config(
            tool="hba-sft",
            stage=o.stage,
            base_model=base,
            init=o.init,
            label_space=self.model.label_space,
            datasets=names,
            options=asdict(o),
            seed=o.seed,
        )


def run_sft(opts: SftOptions) -> dict[str, Any]:
    """Train one stage; returns the run summary (also written to RUN/summary.json)."""
    from hba_core.model.evaluate import report_sink

    if opts.stage not in STAGES:
        raise InputError("stage", f"unknown stage {opts.stage!r}; valid: {', '.join(STAGES)}")
    trainer = Trainer(opts)
    if opts.resume:
        trainer.load_state()
    elif trainer.dist.main and trainer.metrics_path.exists():
        trainer.metrics_path.unlink()
    if trainer.dist.main:
        (trainer.run_dir / "config.json").write_text(json.dumps(trainer.config(), indent=2) + "\n")
    sink = report_sink(opts.report_to, trainer.run_dir) if trainer.dist.main else None
    p = trainer.progress
    trainer.model.train()
    n_epochs = math.ceil(opts.epochs)
    window = {"samples": 0, "tokens": 0, "loss": 0.0, "start": time.perf_counter()}
    stop = False
    while p.epoch < n_epochs and not stop and p.step < trainer.total_steps:
        plan = plan_batches(trainer.train_samples, opts.micro_batch, seed=opts.seed, epoch=p.epoch)
        mine, _dropped = shard_batches(plan, trainer.dist.rank, trainer.dist.world_size)
        per_epoch = len(mine) - len(mine) % trainer.accumulation or len(mine)
        loader = make_loader(trainer.train_samples, mine[p.micro : per_epoch], trainer.collate, workers=opts.workers)
        for batch in loader:
            p.skipped += len(batch.skipped)
            p.audio_cut += batch.audio_cut
            losses, stepped = trainer.micro_step(batch, last_in_epoch=p.micro + 1 == per_epoch)
            p.micro += 1
            p.samples += len(batch)
            window["samples"] += len(batch)
            window["tokens"] += batch.n_tokens
            window["loss"] += float(losses.total.detach())
            if not stepped:
                continue
            p.step += 1
            elapsed = time.perf_counter() - window["start"]
            record = {
                "step": p.step,
                "epoch": p.epoch,
                "loss": window["loss"] / trainer.accumulation,
                "lr": trainer.scheduler.get_last_lr()[0],
                "samples_per_s": window["samples"] * trainer.dist.world_size / elapsed,
                "tokens_per_s": window["tokens"] * trainer.dist.world_size / elapsed,
                "peak_memory_gb": _peak_memory_gb(trainer.dist.device),
                "skipped": p.skipped,
            }
            trainer.log(record)
            if sink:
                sink(record)
            window = {"samples": 0, "tokens": 0, "loss": 0.0, "start": time.perf_counter()}
            if opts.eval_every and p.step % opts.eval_every == 0:
                _validate_and_promote(trainer, sink)
            if p.step % opts.save_every == 0 or p.step == opts.max_steps:
                trainer.save_state()
            if p.step == opts.max_steps or p.step >= trainer.total_steps:
                stop = True
                break
        if stop and p.micro < per_epoch:
            break  # no extra validation here: a resumed run must log exactly what a straight run logs
        if not opts.eval_every or p.step >= trainer.total_steps:
            _validate_and_promote(trainer, sink)
        p.epoch, p.micro = p.epoch + 1, 0
        trainer.save_state()
    from hba_core.model.evaluate import all_gather

    counts = [sum(part) for part in zip(*all_gather((p.samples, p.skipped, p.audio_cut)))]
    summary = {
        "run_dir": str(trainer.run_dir),
        "steps": p.step,
        "epochs_done": p.epoch,
        "samples_seen": counts[0],
        "skipped_samples": counts[1],
        "audio_clips_cut": counts[2],
        "main_process": trainer.dist.main,
        "best_val_ce": p.best_val,
        "best": str(trainer.run_dir / "best") if (trainer.run_dir / "best").is_dir() else None,
        "complete": p.step >= trainer.total_steps,
    }
    if trainer.dist.main:
        (trainer.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutdown_distributed()  # cleanup: an open gloo/shm group can abort the process at exit
    return summary


def _validate_and_promote(trainer: Trainer, sink: Any) -> None:
    p = trainer.progress
    metrics = trainer.validate()
    record = {"step": p.step, "epoch": p.epoch, **{f"val/{k}": v for k, v in metrics.items()}}
    trainer.log(record)
    if sink:
        sink(record)
    if metrics["ce"] < p.best_val:
        p.best_val = metrics["ce"]
        trainer.save_best(metrics)


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # CPU: peak RSS (Linux reports KiB)
