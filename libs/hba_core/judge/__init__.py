"""LLM-judge accuracy for the free-text tasks (SOC: Social-IQ 2.0, INT: IntentQA, NVC: MimeQA).

Modules: ``prompts`` (the paper's and the reference script's judge and rater prompts, looked up by
variant name), ``protocols`` (the reference script's request layout and readings), ``questions`` (what
the judge is shown), ``replies`` (strict reply parsing), ``client`` (one async OpenAI-compatible HTTP
client with concurrency, rate limit, timeouts and retries), ``cache`` (SQLite, kill-safe),
``items`` (what a run judges), ``judgments`` (reply -> record -> validated row), ``summary`` (the run's
counts and report), ``run`` (one run, input order out), ``agreement`` (Cohen's kappa), ``progress``
(stderr line).
"""
