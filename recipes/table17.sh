#!/usr/bin/env bash
# Table 17 (App. D.9): judge ratings (fluency, coherence, relevance, 1-5) of the free-text answers of
# OUT/table4's models (running table4 first if needed). Needs HBA_JUDGE_BASE_URL and HBA_JUDGE_MODEL.
#
# Hardware / time: the judge's throughput: ~1 request per free-text test sample and model.
# Example:
#   HBA_JUDGE_BASE_URL=http://127.0.0.1:8000/v1 HBA_JUDGE_MODEL=gpt-5-nano bash recipes/table17.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table17
judge_enabled || { echo "Error: table17 needs a judge: set HBA_JUDGE_BASE_URL and HBA_JUDGE_MODEL" >&2; exit 2; }
need_table4
for m in sft bam rl base; do
    # hba-judge prints the mean ratings on stderr: kept as this model's summary
    stage "rate-$m" "$R/ratings/$m.jsonl" _stderr_to "$R/ratings/$m.summary.txt" hba-judge --rate \
        --truth "$T4/data/test.jsonl" --pred "$T4/pred/$m.jsonl" --out "$R/ratings/$m.jsonl" --name "$m" \
        --base-url "$HBA_JUDGE_BASE_URL" --model "$HBA_JUDGE_MODEL" -q
done
for m in sft bam rl base; do echo "$m: $(grep 'mean ratings' "$R/ratings/$m.summary.txt")"; done > "$R/table.md"
manifest --input "$ATLAS" --model "$MODEL"
cat "$R/table.md"
