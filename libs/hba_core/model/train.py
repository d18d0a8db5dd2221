"""The OmniSapiens SFT recipe: setup -> train -> validate/promote -> cleanup, in one readable loop.

Stages (App. B.1): ``cls`` trains LoRA + task heads on the classification datasets; ``qa`` freezes
backbone and heads and trains only the LM head on the free-text datasets; ``joint`` trains all three on
L = L_cls + L_qa; ``gen`` trains only LoRA on the LM loss of every sample's answer (label text for
classification samples) and its end token, so the decoder itself answers every task (any backbone).
Defaults are App. C.2: AdamW, lr 1e-4, cosine schedule with 50 warm-up steps, effective batch 512
(= micro-batch x processes x accumulation), 5 epochs, keep the checkpoint with the lowest validation
cross-entropy (promoted to ``RUN/best/`` automatically).

Runs single-process, under ``torchrun`` or under ``deepspeed`` (ZeRO-2/3 configs in
``hba_core/training/configs/``; any multi-process run goes through DeepSpeed; gloo on CPU). ``resume=True``
continues from ``RUN/last/``: model, optimiser, scheduler, data position and the CPU and CUDA RNG, to the
same result as an uninterrupted run. The pieces shared with hba-bam and hba-grpo (processes, DeepSpeed
config, resumable state, atomic directories, metrics log) are :mod:`hba_core.training`'s.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hba_core.errors import HbaError, InputError
from hba_core.model import checkpoint as ckpt
from hba_core.model.batching import make_loader, plan_batches, shard_batches
from hba_core.model.collate import Batch
from hba_core.model.sft_setup import (
    STAGES,
    SftOptions,
    build_model,
    cosine_schedule,
    make_collator,
    select_samples,
    set_trainable,
)
from hba_core.substitutions import Substitutions
from hba_core.threads import configure_torch_threads
from hba_core.training import state as train_state
from hba_core.training.batches import first_decodable, is_empty
from hba_core.training.deepspeed import deepspeed_config
from hba_core.training.distributed import all_gather, init_distributed, shutdown_distributed
from hba_core.training.metrics_log import MetricsLog

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
    # dataset -> {"video->frames": n, ...}: media a non-Omni backbone could not take (this rank)
    substitutions: dict[str, dict[str, int]] = field(default_factory=dict)


class Trainer:
    """Holds the pieces of one run; :func:`run_sft` drives it. Not meant for subclassing."""

    def __init__(self, opts: SftOptions):
        self.opts, self.dist = opts, init_distributed()
        configure_torch_threads(workers=opts.workers)  # cores / local processes, less the decoding workers
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
                bf16=opts.dtype == "bfloat16",
            )
            self.engine, optimizer, _, scheduler = deepspeed.initialize(
                model=self.model, optimizer=optimizer, lr_scheduler=scheduler, config=config
            )
        self.optimizer, self.scheduler = optimizer, scheduler
        self.progress = Progress()
        # gen teaches every sample's answer (a classification sample's label text) to the decoder
        self.collate = make_collator(self.model, self.processor, opts.media(), every_answer=opts.stage == "gen")
        self.metrics_log = MetricsLog(
            self.run_dir / "metrics.jsonl", main=self.dist.main, report_to=opts.report_to, project="hba-sft"
        )
        self.last_batch: Batch | None = None  # stand-in for an empty micro-batch under DeepSpeed (see micro_step)

    # ---------------------------------------------------------- state

    def save_state(self) -> None:
        """RUN/last/: trainable weights, optimizer, scheduler, progress and every rank's CPU + CUDA RNG,
        replaced as a whole (:func:`~hba_core.training.state.atomic_dir`)."""
        last = self.run_dir / "last"
        if self.engine is not None:
            client = {"progress": asdict(self.progress), "rng": train_state.rng_state()}
            with train_state.atomic_dir(last, is_main=self.dist.main, collective=True) as tmp:
                self.engine.save_checkpoint(str(tmp), tag="state", client_state=client)
                # The client state is rank 0's; every rank keeps its own RNG (dropout masks differ per rank).
                train_state.save_file_atomic(train_state.rng_state(), tmp / f"rng-rank{self.dist.rank}.pt")
            return
        if not self.dist.main:
            return
        state = train_state.capture_state(self.model, self.optimizer, self.scheduler, asdict(self.progress))
        with train_state.atomic_dir(last) as tmp:
            torch.save(state, tmp / "state.pt")

    def load_state(self) -> None:
        last = self.run_dir / "last"
        if self.engine is not None:
            _, client = self.engine.load_checkpoint(str(last), tag="state")
            if client is None:
                raise InputError(str(last), "no resumable state; run without --resume")
            rng = last / f"rng-rank{self.dist.rank}.pt"
            self.progress = Progress(**client["progress"])
            train_state.set_rng_state(torch.load(rng, weights_only=True) if rng.exists() else client["rng"])
        else:
            if not (last / "state.pt").exists():
                raise InputError(str(last), "no resumable state; run without --resume")
            state = torch.load(last / "state.pt", weights_only=True)
            progress = train_state.restore_state(state, self.model, self.optimizer, self.scheduler)
            self.progress = Progress(**progress)

    # ---------------------------------------------------------- steps

    def forward(self, batch: Batch) -> Any:
        cls, lm = self.opts.stage in ("cls", "joint"), self.opts.stage in ("qa", "joint", "gen")
        context = (
            torch.autocast(self.dist.device.type, dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        )
        with context:
            return (self.engine or self.model)(batch, cls=cls, lm=lm)

    def micro_step(self, batch: Batch, *, last_in_epoch: bool) -> tuple[float, bool]:
        """Forward + backward of one micro-batch; returns (its loss, whether the optimizer stepped).

        A micro-batch whose every sample was skipped contributes nothing: in one process it is not run;
        under DeepSpeed this rank runs a stand-in batch with the loss times 0, so the collective step still meets.
        """
        loss = self._backward(batch)
        if self.engine is not None:
            boundary = self.engine.is_gradient_accumulation_boundary()
            self.engine.step()
            return loss, boundary
        if (self.progress.micro + 1) % self.accumulation and not last_in_epoch:
            return loss, False
        torch.nn.utils.clip_grad_norm_(self.trainable, self.opts.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss, True

    def _backward(self, batch: Batch) -> float:
        if not is_empty(batch):
            self.last_batch = batch
            losses = self.forward(batch.to(self.dist.device))
            if self.engine is not None:
                self.engine.backward(losses.total)
            else:
                (losses.total / self.accumulation).backward()
            return float(losses.total.detach())
        if self.engine is None:
            return 0.0
        # DeepSpeed: join the collective backward with a real batch weighted 0 (training.batches explains why).
        if self.last_batch is None:
            self.last_batch = first_decodable(self.train_samples, self.collate)
        if self.last_batch is None:
            raise HbaError("no training sample has decodable media; fix the media paths (--data-root)")
        self.engine.backward(self.forward(self.last_batch.to(self.dist.device)).total * 0.0)
        return 0.0

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
            # qa and gen leave the heads as they found them: trained only if the --init checkpoint's were
            heads = self.opts.stage in ("cls", "joint") or bool(self.opts.init) and self.model.heads_trained
            if self.dist.main:
                ckpt.save_checkpoint(
                    self.model,
                    self.run_dir / "best",
                    self.config(),
                    processor=self.processor,
                    lm_head_trained=self.opts.stage in ("qa", "joint") or self._init_lm_head(),
                    metrics=metrics,
                    heads_trained=heads,
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
    if opts.stage not in STAGES:
        raise InputError("stage", f"unknown stage {opts.stage!r}; valid: {', '.join(STAGES)}")
    trainer = Trainer(opts)
    if opts.resume:
        trainer.load_state()
    # Records past the resumed step are logged again (a resumed run logs exactly what a straight run logs).
    trainer.metrics_log.start(resume_step=trainer.progress.step if opts.resume else None)
    if trainer.dist.main:
        (trainer.run_dir / "config.json").write_text(json.dumps(trainer.config(), indent=2) + "\n")
    p = trainer.progress
    trainer.model.train()
    n_epochs = math.ceil(opts.epochs)
    window = {"samples": 0, "tokens": 0, "loss": 0.0, "run": 0, "start": time.perf_counter()}
    stop = False
    while p.epoch < n_epochs and not stop and p.step < trainer.total_steps:
        plan = plan_batches(trainer.train_samples, opts.micro_batch, seed=opts.seed, epoch=p.epoch)
        mine, _dropped = shard_batches(plan, trainer.dist.rank, trainer.dist.world_size)
        per_epoch = len(mine) - len(mine) % trainer.accumulation or len(mine)
        loader = make_loader(trainer.train_samples, mine[p.micro : per_epoch], trainer.collate, workers=opts.workers)
        for batch in loader:
            p.skipped += len(batch.skipped)
            p.audio_cut += batch.audio_cut
            if batch.substitutions:
                subs = Substitutions()
                subs.merge(p.substitutions)
                subs.merge(batch.substitutions)
                p.substitutions = subs.as_dict()
            loss, stepped = trainer.micro_step(batch, last_in_epoch=p.micro + 1 == per_epoch)
            p.micro += 1
            p.samples += len(batch)
            window["samples"] += len(batch)
            window["tokens"] += batch.n_tokens
            window["loss"] += loss
            window["run"] += len(batch) > 0  # micro-batches with a sample left (the loss is their mean)
            if not stepped:
                continue
            p.step += 1
            elapsed = time.perf_counter() - window["start"]
            record = {
                "step": p.step,
                "epoch": p.epoch,
                "loss": window["loss"] / window["run"] if window["run"] else None,
                "lr": trainer.scheduler.get_last_lr()[0],
                "samples_per_s": window["samples"] * trainer.dist.world_size / elapsed,
                "tokens_per_s": window["tokens"] * trainer.dist.world_size / elapsed,
                "peak_memory_gb": _peak_memory_gb(trainer.dist.device),
                "skipped": p.skipped,
            }
            trainer.metrics_log.log(record)
            window = {"samples": 0, "tokens": 0, "loss": 0.0, "run": 0, "start": time.perf_counter()}
            if opts.eval_every and p.step % opts.eval_every == 0:
                _validate_and_promote(trainer)
            if p.step % opts.save_every == 0 or p.step == opts.max_steps:
                trainer.save_state()
            if p.step == opts.max_steps or p.step >= trainer.total_steps:
                stop = True
                break
        if stop and p.micro < per_epoch:
            break  # no extra validation here: a resumed run must log exactly what a straight run logs
        if not opts.eval_every or p.step >= trainer.total_steps:
            _validate_and_promote(trainer)
        p.epoch, p.micro = p.epoch + 1, 0
        trainer.save_state()
    counts = [sum(part) for part in zip(*all_gather((p.samples, p.skipped, p.audio_cut)))]
    substitutions = Substitutions()
    for part in all_gather(p.substitutions):
        substitutions.merge(part)
    summary = {
        "run_dir": str(trainer.run_dir),
        "steps": p.step,
        "epochs_done": p.epoch,
        "samples_seen": counts[0],
        "skipped_samples": counts[1],
        "audio_clips_cut": counts[2],
        "adapter": trainer.model.backbone.adapter,
        "substitutions": substitutions.as_dict(),  # training samples, per dataset (non-Omni backbones)
        "main_process": trainer.dist.main,
        "best_val_ce": p.best_val,
        "best": str(trainer.run_dir / "best") if (trainer.run_dir / "best").is_dir() else None,
        "complete": p.step >= trainer.total_steps,
    }
    if trainer.dist.main:
        (trainer.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if summary["substitutions"]:  # a backbone without some modality trained on what it takes - never silent
            print(f"modality substitutions ({summary['adapter']} backbone), per dataset:", file=sys.stderr)
            for line in substitutions.lines():
                print(f"  {line}", file=sys.stderr)
    shutdown_distributed()  # cleanup: an open gloo/shm group can abort the process at exit
    return summary


def _validate_and_promote(trainer: Trainer) -> None:
    p = trainer.progress
    metrics = trainer.validate()
    trainer.metrics_log.log({"step": p.step, "epoch": p.epoch, **{f"val/{k}": v for k, v in metrics.items()}})
    if metrics["ce"] < p.best_val:
        p.best_val = metrics["ce"]
        trainer.save_best(metrics)


def _peak_memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # CPU: peak RSS (Linux reports KiB)
