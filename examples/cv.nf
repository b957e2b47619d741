#!/usr/bin/env nextflow
// Cross-validation with one fold per process, then one merge.
//
//   nextflow run examples/cv.nf --geno data/example.bed --pheno data/example.pheno.csv \
//       --trait trait --models gblup,configs/mlp.toml,configs/cnn1d-pez.toml --folds 5
//
// Every fold job uses the same --seed, so all of them draw the same folds
// (each writes the same folds.csv, which `cv merge` checks).

nextflow.enable.dsl = 2

params.geno    = "data/example.bed"
params.pheno   = "data/example.pheno.csv"
params.trait   = "trait"
params.models  = "gblup,configs/mlp.toml,configs/cnn1d-pez.toml"
params.folds   = 5
params.seed    = 1
params.threads = 2
params.outdir  = "results/cv"
params.genocnn = "genocnn"

process CV_FOLD {
    cpus params.threads
    input:
    val k
    output:
    path "fold_${k}"
    script:
    """
    ${params.genocnn} cv --geno ${file(params.geno)} --pheno ${file(params.pheno)} --trait ${params.trait} \\
        --models ${params.models.split(',').collect { it.endsWith('.toml') ? file(it).toString() : it }.join(',')} \\
        --folds ${params.folds} --seed ${params.seed} --threads ${params.threads} \\
        --fold ${k} --out fold_${k}
    """
}

process CV_MERGE {
    publishDir params.outdir, mode: 'copy'
    input:
    path dirs
    output:
    path "merged/*"
    script:
    """
    ${params.genocnn} cv merge --out merged ${dirs}
    """
}

workflow {
    folds = Channel.of(1..params.folds)
    CV_MERGE(CV_FOLD(folds).collect())
}
