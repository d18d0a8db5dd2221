"""Behavioral Adapter Modules (paper §3.6): residual adapters from pooled descriptors to h_penult.

- :mod:`~hba_core.bam.adapter` - the module (the paper's equations) and a dataset's set of adapters;
- :mod:`~hba_core.bam.features` - per-sample descriptor vectors from the descriptor store (hba's or the reference's);
- :mod:`~hba_core.bam.cache` - cached pooled h_penult of a frozen checkpoint;
- :mod:`~hba_core.bam.train` - the training loop on pooled vectors (classification datasets);
- :mod:`~hba_core.bam.decoder` - Δh in the decoder path (free-text datasets);
- :mod:`~hba_core.bam.data` - hba-bam's samples, checked (ids, datasets) and grouped;
- :mod:`~hba_core.bam.run` - hba-bam's work per dataset; :mod:`~hba_core.bam.apply` - prediction time.
- :mod:`~hba_core.bam.reference` - the released (reference-layout) BAM checkpoints as hba BAM sets.
"""
