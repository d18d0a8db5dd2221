#!/usr/bin/env bash
# Table 4 and Figure 2 (paper §4.1): multi-task results of the three OmniSapiens-7B variants and the
# base model. SFT (cls, then qa from it) -> descriptors -> one BAM per dataset on the SFT model -> GRPO
# from the base model -> predictions of SFT, BAM, RL and the base model(s) zero-shot (generate mode)
# on the test split -> judging of the free-text tasks (if a judge is configured) -> scores, Table 4
# layout (table.md), report.json and the models x tasks heatmap (heatmap.png).
#
# Hardware / time: PROFILE=mini (default) 2 CPU cores, ~5 min (tiny random model: the pipeline, not the
#   paper's numbers). PROFILE=paper: SFT and BAM on 8x H200 (paper C.2), GRPO 10 epochs on GPUS; days.
# Settings: BAM_DATASETS (comma list), EXTRA_MODELS (space-separated base models to evaluate zero-shot:
#   hub ids, local dirs, or endpoint:NAME@URL for a model on an OpenAI-compatible server such as vLLM),
#   HBA_JUDGE_BASE_URL + HBA_JUDGE_MODEL (judge; else free-text tasks are reported as not judged).
# Example:
#   bash recipes/table4.sh OUT=runs
#   HBA_JUDGE_BASE_URL=http://127.0.0.1:8000/v1 HBA_JUDGE_MODEL=Qwen/Qwen3-30B-A3B \
#       bash recipes/table4.sh PROFILE=paper DATA=/data/hba GPUS=8 OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/extra_models.sh"
hba_setup table4

if [[ $PROFILE == mini ]]; then
    BAM_DATASETS=${BAM_DATASETS:-$(fact bam_mini)}
else
    BAM_DATASETS=${BAM_DATASETS:-$(fact bam)}
fi
read -r -a EXTRA <<< "${EXTRA_MODELS:-}"
echo "$BAM_DATASETS" > "$R/.bam_datasets"

# 1. data: train/val for training, test for evaluation
stage_to select-trainval "$R/data/trainval.jsonl" hba-convert select "$ATLAS" --split train,val
stage_to select-train "$R/data/train.jsonl" hba-convert select "$ATLAS" --split train
stage_to select-val "$R/data/val.jsonl" hba-convert select "$ATLAS" --split val
stage_to select-test "$R/data/test.jsonl" hba-convert select "$ATLAS" --split test

# 2. OmniSapiens-7B SFT: classifier heads, then the LM head for the free-text tasks (App. B.1)
stage sft-cls "$R/cls/best" launch sft cls "$R/data/trainval.jsonl" --data-root "$DATA" --model "$MODEL" \
    -o "$R/cls" "${SFT_ARGS[@]}"
stage sft-qa "$R/qa/best" launch sft qa "$R/data/trainval.jsonl" --data-root "$DATA" --model "$MODEL" \
    --init "$R/cls/best" -o "$R/qa" "${SFT_ARGS[@]}"

# 3. OmniSapiens-7B BAM: descriptors of the BAM datasets' media, one adapter set per dataset
stage_to select-bam "$R/data/bam.jsonl" hba-convert select "$ATLAS" --dataset "$BAM_DATASETS"
stage descriptors "$R/desc.zarr" hba-descriptors extract --samples "$R/data/bam.jsonl" --root "$DATA" \
    --store "$R/desc.zarr" "${DESC_ARGS[@]}"
stage bam "$R/bam" hba-bam --init "$R/qa/best" --samples "$R/data/bam.jsonl" --root "$DATA" \
    --store "$R/desc.zarr" --datasets "$BAM_DATASETS" --out "$R/bam" "${BAM_ARGS[@]}"

# 4. OmniSapiens-7B RL: GRPO from the base model (App. B.2, C.2)
stage grpo "$R/rl/final" launch grpo --init "$MODEL" --train "$R/data/train.jsonl" --val "$R/data/val.jsonl" \
    --data-root "$DATA" --out "$R/rl" "${GRPO_ARGS[@]}"

# 5. predictions on the test split (hba-predict resumes: a killed stage continues where it stopped)
predict() {  # predict NAME ARGS...
    local name=$1; shift
    stage "predict-$name" "$R/pred/$name.jsonl" hba-predict --samples "$R/data/test.jsonl" --data-root "$DATA" \
        --out "$R/pred/$name.jsonl" "${PREDICT_ARGS[@]}" "$@"
}
predict sft --model "$R/qa/best"
predict bam --model "$R/qa/best" --bam "$R/bam" --store "$R/desc.zarr"
predict rl --model "$R/rl/final" --mode generate --template think
predict base --model "$MODEL" --mode generate
models=("OmniSapiens-7B SFT=$R/pred/sft.jsonl" "OmniSapiens-7B BAM=$R/pred/bam.jsonl"
        "OmniSapiens-7B RL=$R/pred/rl.jsonl" "$(basename "$MODEL")=$R/pred/base.jsonl")
for extra in "${EXTRA[@]}"; do  # hub ids, local dirs, endpoint:NAME@URL (recipes/extra_models.sh)
    extra_model "$extra"
    predict "extra-$EXTRA_FILE" "${EXTRA_ARGS[@]}"
    models+=("$EXTRA_NAME=$R/pred/extra-$EXTRA_FILE.jsonl")
done

# 6. judge the free-text answers (SOC, INT, NVC) when a judge endpoint is configured, then score
if ! judge_enabled; then log "no judge configured (HBA_JUDGE_BASE_URL, HBA_JUDGE_MODEL): free-text tasks not judged"; fi
for spec in "${models[@]}"; do judge "${spec%%=*}" "${spec#*=}" "$R/data/test.jsonl"; done
score "$R/data/test.jsonl" "${models[@]}"
manifest --input "$ATLAS" --model "$MODEL" "${EXTRA[@]/#/--model=}" --set "bam_datasets=$BAM_DATASETS"
cat "$R/table.md"
