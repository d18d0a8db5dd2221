"""OmniSapiens on Qwen2.5-Omni's Thinker: backbone loading, multimodal collation, heads, training and prediction.

Modules, one concept each:

- :mod:`~hba_core.model.source` - find a backbone (local dir or hub cache) and read its config, no weights;
- :mod:`~hba_core.model.backbones` - the adapters per model family, chosen from ``config.json``;
- :mod:`~hba_core.model.backbone` - load the Thinker + processor (hub id or local path), LoRA;
- :mod:`~hba_core.model.generic` - any other backbone: loading, collation with counted substitutions;
- :mod:`~hba_core.model.configs` - the real Qwen2.5-Omni-7B Thinker configuration (benchmarks, planning);
- :mod:`~hba_core.model.reference` - the reference trainer's SFT checkpoints mapped onto ours;
- :mod:`~hba_core.model.collate` - HBA samples -> Thinker inputs with the official processor;
- :mod:`~hba_core.model.batching` - modality-homogeneous, length-bucketed batches and the DataLoader;
- :mod:`~hba_core.model.heads` - masked-mean pooling and one classifier head per task;
- :mod:`~hba_core.model.omnisapiens` - the model: pooled h_penult, heads, LM-head decoder, log-probs;
- :mod:`~hba_core.model.checkpoint` - save / load / merge checkpoints;
- :mod:`~hba_core.model.sft_options` - SFT options (API + CLI + config file; no torch);
- :mod:`~hba_core.model.sft_setup` - SFT sample selection, trainable parameters, schedule, model;
- :mod:`~hba_core.model.train` - the SFT loop (single process, torchrun or deepspeed).

Prediction sits above this package and BAM (:mod:`hba_core.predict`, :mod:`hba_core.predict_parallel`).

Everything here needs the ``train`` extra (torch, transformers, peft), but ``sft_options``; the rest of hba_core
does not.
"""
