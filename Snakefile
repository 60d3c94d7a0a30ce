# SciSR: does a super-resolution model trained on one kind of scientific image beat a
# generically trained one? The eight phases are in rules/; `snakemake` runs the whole study.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/extract.smk"
include: "rules/normalize.smk"
include: "rules/split.smk"
include: "rules/train.smk"
include: "rules/import.smk"
include: "rules/infer.smk"
include: "rules/score.smk"
include: "rules/budget.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
