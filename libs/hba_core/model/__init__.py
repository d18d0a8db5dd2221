"""OmniSapiens on Qwen2.5-Omni's Thinker: backbone loading, multimodal collation, heads, training and prediction.

Modules, one concept each:

- :mod:`~hba_core.model.backbone` - load the Thinker + processor (hub id or local path), LoRA;
- :mod:`~hba_core.model.collate` - HBA samples -> Thinker inputs with the official processor;
- :mod:`~hba_core.model.batching` - modality-homogeneous, length-bucketed batches and the DataLoader;
- :mod:`~hba_core.model.heads` - masked-mean pooling and one classifier head per task;
- :mod:`~hba_core.model.omnisapiens` - the model: pooled h_penult, heads, LM-head decoder, log-probs;
- :mod:`~hba_core.model.checkpoint` - save / load / merge checkpoints;
- :mod:`~hba_core.model.train` - the SFT loop (single process, torchrun or deepspeed);
- :mod:`~hba_core.model.predict` - heads and generate prediction.

Everything here needs the ``train`` extra (torch, transformers, peft); the rest of hba_core does not.
"""
