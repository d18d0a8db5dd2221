#!/usr/bin/env bash
# Table 19 (App. D.11): sentiment of the Table 4 models at the full intensity scale - 7-class weighted F1
# and accuracy on CMU-MOSEI, the 5-class scale of CH-SIMS v2 - from OUT/table4's predictions (running
# table4 first if needed). table.md is that table; binary.md keeps the benchmark's binary weighted F1.
#
# Hardware / time: as table4; the scoring itself takes seconds.
# Example:
#   bash recipes/table19.sh OUT=runs
set -euo pipefail
source "$(dirname "$0")/lib.sh"
hba_setup table19
need_table4
stage_to select-test "$R/data/test.jsonl" hba-convert select "$T4/data/test.jsonl" --dataset "$(fact intensity)"
models=(--pred "$T4/pred/sft.jsonl" --name "OmniSapiens-7B SFT" --pred "$T4/pred/bam.jsonl" --name "OmniSapiens-7B BAM"
        --pred "$T4/pred/rl.jsonl" --name "OmniSapiens-7B RL" --pred "$T4/pred/base.jsonl" --name "$(basename "$MODEL")")
# the predictions cover the whole test set and the truth only the intensity datasets: --subset counts the
# other ids in one line per model instead of listing them
stage score-json "$R/report.json" hba-score --truth "$R/data/test.jsonl" --subset "${models[@]}" --format json \
    -o "$R/report.json" --plot "$R/heatmap.png"
stage score-intensity "$R/table.md" hba-score --truth "$R/data/test.jsonl" --subset "${models[@]}" \
    --format intensity -o "$R/table.md"
stage score-binary "$R/binary.md" hba-score --truth "$R/data/test.jsonl" --subset "${models[@]}" --format md \
    -o "$R/binary.md"
manifest --input "$ATLAS" --model "$MODEL"
cat "$R/table.md"
