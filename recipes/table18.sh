#!/usr/bin/env bash
# Table 18 (App. D.10): judge agreement: Cohen's kappa between judgments of OUT/table4's SFT answers with the
# paper prompt and with the paraphrased prompt (and, if SECOND_JUDGE_MODEL is set, a second judge model).
#
# Hardware / time: the judge's throughput: 2-3 requests per free-text test sample.
# Example:
#   HBA_JUDGE_BASE_URL=http://127.0.0.1:8000/v1 HBA_JUDGE_MODEL=gpt-5-nano bash recipes/table18.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table18
judge_enabled || { echo "Error: table18 needs a judge: set HBA_JUDGE_BASE_URL and HBA_JUDGE_MODEL" >&2; exit 2; }
need_table4
run_judge() {  # run_judge NAME MODEL VARIANT
    stage "judge-$1" "$R/judged/$1.jsonl" hba-judge --truth "$T4/data/test.jsonl" --pred "$T4/pred/sft.jsonl" \
        --out "$R/judged/$1.jsonl" --base-url "$HBA_JUDGE_BASE_URL" --model "$2" --prompt-variant "$3" -q
}
run_judge paper "$HBA_JUDGE_MODEL" paper
run_judge paraphrased "$HBA_JUDGE_MODEL" paraphrased
stage_to agree-prompt "$R/agree-prompt.txt" hba-judge agree "$R/judged/paper.jsonl" "$R/judged/paraphrased.jsonl"
if [[ -n ${SECOND_JUDGE_MODEL:-} ]]; then
    run_judge second "$SECOND_JUDGE_MODEL" paper
    stage_to agree-judges "$R/agree-judges.txt" hba-judge agree "$R/judged/paper.jsonl" "$R/judged/second.jsonl"
fi
cat "$R"/agree-*.txt > "$R/table.md"
manifest --input "$ATLAS" --model "$MODEL" --set "second_judge=${SECOND_JUDGE_MODEL:-}"
cat "$R/table.md"
