#!/bin/bash
# Cross-validation as a Slurm job array: one fold per array task, then a
# merge that waits for all of them. The merged output equals a single
# `genocnn cv` run with the same seed (metrics.csv byte for byte; tested
# against a single-node Slurm in tests/cli/workflows.rs).
#
#   sbatch examples/cv-slurm.sh                 # the bundled example, 5 folds
#   sbatch --array=1-10 --export=ALL,GENO=my.bed,PHENO=my.pheno.csv,TRAIT=yield \
#       examples/cv-slurm.sh                    # 10 folds of your data
#
# Settings (environment, exported to the job): GENOCNN (the binary), GENO,
# PHENO, TRAIT, MODELS, SEED, OUT, EXTRA (more `genocnn cv` options). The
# number of folds is the array's size. Every task uses the same --seed, so
# all of them draw the same folds; all read the one genotype file in place.
#SBATCH --job-name=genocnn-cv
#SBATCH --array=1-5
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=01:00:00
#SBATCH --output=genocnn-cv-%A_%a.log

set -euo pipefail
GENOCNN=${GENOCNN:-genocnn}
GENO=${GENO:-data/example.bed}
PHENO=${PHENO:-data/example.pheno.csv}
TRAIT=${TRAIT:-trait}
MODELS=${MODELS:-gblup,configs/mlp.toml,configs/cnn1d-pez.toml}
SEED=${SEED:-1}
OUT=${OUT:-results/cv-slurm}
EXTRA=${EXTRA:-}

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
    echo "run this script with sbatch" >&2
    exit 1
fi
FOLDS=${SLURM_ARRAY_TASK_COUNT:-5}
FOLD_DIR="$OUT.folds"
mkdir -p "$FOLD_DIR"

# shellcheck disable=SC2086 # EXTRA is a list of options
"$GENOCNN" cv --geno "$GENO" --pheno "$PHENO" --trait "$TRAIT" --models "$MODELS" \
    --folds "$FOLDS" --seed "$SEED" --threads "${SLURM_CPUS_PER_TASK:-2}" $EXTRA \
    --fold "$SLURM_ARRAY_TASK_ID" --out "$FOLD_DIR/fold_$SLURM_ARRAY_TASK_ID"

# The first task submits the merge, to run once every task has succeeded.
if [ "$SLURM_ARRAY_TASK_ID" = "${SLURM_ARRAY_TASK_MIN:-1}" ]; then
    dirs=""
    for k in $(seq 1 "$FOLDS"); do dirs="$dirs $(printf '%q' "$FOLD_DIR/fold_$k")"; done
    sbatch --dependency="afterok:${SLURM_ARRAY_JOB_ID}" --job-name=genocnn-cv-merge \
        --output="$FOLD_DIR/merge.log" --wrap \
        "$(printf '%q' "$GENOCNN") cv merge --out $(printf '%q' "$OUT") $dirs"
fi
