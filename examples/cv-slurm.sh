#!/bin/bash
# Cross-validation as a Slurm job array: one fold per array task, then a
# merge that waits for all of them.
#
#   sbatch examples/cv-slurm.sh          # submits the folds and the merge
#
# Every task uses the same --seed, so all of them draw the same folds.
#SBATCH --job-name=genocnn-cv
#SBATCH --array=1-5
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=01:00:00
#SBATCH --output=results/cv-slurm/fold_%a.log

set -euo pipefail
GENOCNN=${GENOCNN:-genocnn}
OUT=${OUT:-results/cv-slurm}
FOLDS=5
mkdir -p "$OUT"

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
    echo "run this script with sbatch" >&2
    exit 1
fi

"$GENOCNN" cv --geno data/example.bed --pheno data/example.pheno.csv --trait trait \
    --models gblup,configs/mlp.toml,configs/cnn1d-pez.toml \
    --folds "$FOLDS" --seed 1 --threads "${SLURM_CPUS_PER_TASK:-2}" \
    --fold "$SLURM_ARRAY_TASK_ID" --out "$OUT/fold_$SLURM_ARRAY_TASK_ID"

# The first task submits the merge, to run once every task has succeeded.
if [ "$SLURM_ARRAY_TASK_ID" = "1" ]; then
    sbatch --dependency="afterok:${SLURM_ARRAY_JOB_ID}" --job-name=genocnn-cv-merge \
        --output="$OUT/merge.log" --wrap \
        "$GENOCNN cv merge --out $OUT/merged $(for k in $(seq 1 $FOLDS); do printf '%s ' "$OUT/fold_$k"; done)"
fi
