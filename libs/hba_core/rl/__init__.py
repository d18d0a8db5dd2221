"""Reinforcement learning for OmniSapiens-7B RL: GRPO (and RLOO) on the Thinker's decoder.

One module per concept, a loop a reader can follow in one sitting:

- :mod:`hba_core.rl.advantages`: group-normalised (GRPO) and leave-one-out (RLOO) advantages;
- :mod:`hba_core.rl.loss`: the token-level clipped surrogate with per-response-length averaging (Eq. 4);
- :mod:`hba_core.rl.rollout`: the rollout-engine interface, Hugging Face ``generate`` and optional vLLM;
- :mod:`hba_core.rl.config`: every option of a run (App. C.2 defaults) = the ``hba-grpo`` flags;
- :mod:`hba_core.rl.policy`: model, processor, optimizer, DeepSpeed engine, reference policy;
- :mod:`hba_core.rl.step`: one step - rollouts, rewards, advantages, pi_old, PPO updates, metrics;
- :mod:`hba_core.rl.checkpoint`: resumable step checkpoints and the final servable model;
- :mod:`hba_core.rl.trainer`: the recipe - setup, steps, validation, checkpoints, final model.

The reward terms live in :mod:`hba_core.rewards` (usable without torch). Data files: the reasoning
prompt ``templates/think.txt`` (App. B.2). Processes, the DeepSpeed config (ZeRO-2), RNG state, atomic
checkpoint directories and the metrics log are the components of :mod:`hba_core.training`, shared with SFT.
"""
