"""Behavioral Adapter Modules (paper §3.6): residual adapters from pooled descriptors to h_penult.

- :mod:`~hba_core.bam.adapter` - the module (the paper's equations) and a dataset's set of adapters;
- :mod:`~hba_core.bam.features` - per-sample descriptor vectors from the descriptor store (hba's or the reference's);
- :mod:`~hba_core.bam.cache` - cached pooled h_penult of a frozen checkpoint;
- :mod:`~hba_core.bam.settings` - the hyper-parameters (API + hba-bam flags; no torch);
- :mod:`~hba_core.bam.train` - the training loop on pooled vectors (classification datasets);
- :mod:`~hba_core.bam.decoder` - Δh in the decoder path (free-text datasets);
- :mod:`~hba_core.bam.data` - hba-bam's samples, checked (ids, datasets) and grouped;
- :mod:`~hba_core.bam.job` - what one hba-bam run is asked to do; :mod:`~hba_core.bam.inputs` - the backbone
  pass, descriptor features and training splits; :mod:`~hba_core.bam.saved` - a BAM set on disk;
- :mod:`~hba_core.bam.run` - hba-bam's work per dataset (:mod:`~hba_core.bam.free_text` - the decoder path);
  :mod:`~hba_core.bam.apply` - prediction time.
- :mod:`~hba_core.bam.reference` - the released (reference-layout) BAM checkpoints as hba BAM sets.
"""
