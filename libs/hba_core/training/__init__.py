"""Training components shared by the recipes (hba-sft, hba-bam, hba-grpo): plain functions and small dataclasses.

- :mod:`~hba_core.training.distributed` - rank/world from the launcher, process group, barrier, teardown;
- :mod:`~hba_core.training.deepspeed` - the one DeepSpeed config builder over ``configs/zero{2,3}.json``;
- :mod:`~hba_core.training.state` - CPU + CUDA RNG state and :func:`~hba_core.training.state.atomic_dir`;
- :mod:`~hba_core.training.metrics_log` - metrics JSONL (append, truncate on resume) and TensorBoard / W&B sinks;
- :mod:`~hba_core.training.batches` - micro-batches whose every sample was skipped (and their stand-in).
- :mod:`~hba_core.training.plan` - the memory planner (per-GPU memory of a run before anything is loaded),
  over :mod:`~hba_core.training.meta_counts` (the run's model counted on the meta device).

A recipe reads top to bottom over these (setup -> train -> cleanup); there is no trainer base class.
"""
