#!/usr/bin/env bash
# Installs what the workflow tests run for real (tests/cli/workflows.rs):
# Snakemake and its Slurm executor plugin from PyPI into
# target/tools/snakemake (a virtual environment),
# and, as root on Debian, slurm-wlm and munge for scripts/slurm-local.sh.
# Whatever cannot be installed is reported, and the test that needs it
# skips saying why; this script itself does not fail the build.
set -uo pipefail
cd "$(dirname "$0")/.."
SNAKEMAKE_VERSION=9.27.1
SLURM_PLUGIN_VERSION=2.8.0

venv=target/tools/snakemake
if [ -x "$venv/bin/snakemake" ] &&
    "$venv/bin/python" -c "import snakemake_executor_plugin_slurm" 2> /dev/null; then
    echo "workflow-tools: snakemake $("$venv/bin/snakemake" --version) in $venv"
elif ! command -v python3 > /dev/null; then
    echo "workflow-tools: no python3: the Snakemake test will skip" >&2
else
    rm -rf "$venv"
    if python3 -m venv "$venv" && "$venv/bin/pip" install -q "snakemake==$SNAKEMAKE_VERSION" \
        "snakemake-executor-plugin-slurm==$SLURM_PLUGIN_VERSION"; then
        echo "workflow-tools: installed snakemake $SNAKEMAKE_VERSION and its Slurm executor in $venv"
    else
        rm -rf "$venv"
        echo "workflow-tools: could not install snakemake from PyPI: the Snakemake test will skip" >&2
    fi
fi

if command -v slurmctld > /dev/null || [ -x /usr/sbin/slurmctld ]; then
    echo "workflow-tools: slurm-wlm is installed"
elif [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "workflow-tools: slurm-wlm is not installed and this is not root on Debian: the Slurm test will skip" >&2
elif DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge > target/tools/apt-slurm.log 2>&1; then
    echo "workflow-tools: installed slurm-wlm and munge"
else
    echo "workflow-tools: apt-get could not install slurm-wlm (target/tools/apt-slurm.log): the Slurm test will skip" >&2
fi
exit 0
