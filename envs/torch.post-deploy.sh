#!/bin/sh
# Snakemake runs this once in the env it has just created (a post-deploy script): it installs the workflow's own
# library, editable, so that jobs import the checkout's src/scisr and a code change needs no reinstall. --no-deps:
# the env file holds what the rules need (the library's full list, torch included, is the venv's); --no-index:
# nothing is downloaded. rules/common.smk sets SCISR_SOURCE to the workflow folder while Snakemake runs.
set -eu
python -m pip install --quiet --no-deps --no-build-isolation --no-index \
    --editable "${SCISR_SOURCE:?not set: run this through Snakemake (rules/common.smk sets it)}"
