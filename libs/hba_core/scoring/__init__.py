"""Scoring model outputs against the Atlas: join truth, predictions and judgments by sample id, count every
problem, and compute the unified metrics per dataset and per task (with bootstrap intervals and paired tests).

- :mod:`hba_core.scoring.join`: the truth and the joined types, every problem counted;
- :mod:`hba_core.scoring.predictions`: a model's predictions read and aligned to the truth by id;
- :mod:`hba_core.scoring.judgments`: hba-judge judgments joined to a model, judgments files to models;
- :mod:`hba_core.scoring.dataset`: one dataset's metric under a protocol (``paper`` or ``reference``);
- :mod:`hba_core.scoring.report`: per-task means, bootstrap intervals, paired comparisons, the report.

>>> from hba_core.fixtures.atlas import fixture_sample
>>> truth = truth_from_rows([fixture_sample("mmsd", i, "test", video=None, audio=None) for i in range(4)])
>>> preds = predictions_from_rows("m", [{"id": i, "prediction": "Sarcastic!"} for i in truth.ids], truth)
>>> report = score(truth, [preds])
>>> report["models"][0]["datasets"]["mmsd"]["value"]
0.3333333333333333
"""

from hba_core.scoring.dataset import PROTOCOLS, DatasetScore, score_dataset
from hba_core.scoring.join import (
    JUDGE_STATUSES,
    MAX_PROBLEMS,
    Predictions,
    Truth,
    load_truth,
    start_truth,
    truth_from_rows,
)
from hba_core.scoring.judgments import attach_judgments, judgment_plan, load_judgments, require_judgments
from hba_core.scoring.predictions import (
    check_usable,
    embedded_predictions,
    load_all,
    load_predictions,
    name_by_model_field,
    predictions_from_rows,
)
from hba_core.scoring.report import compare_models, score, score_model

__all__ = [
    "JUDGE_STATUSES",
    "MAX_PROBLEMS",
    "PROTOCOLS",
    "DatasetScore",
    "Predictions",
    "Truth",
    "attach_judgments",
    "check_usable",
    "compare_models",
    "embedded_predictions",
    "load_all",
    "judgment_plan",
    "load_judgments",
    "load_predictions",
    "load_truth",
    "name_by_model_field",
    "predictions_from_rows",
    "require_judgments",
    "score",
    "score_dataset",
    "score_model",
    "start_truth",
    "truth_from_rows",
]
