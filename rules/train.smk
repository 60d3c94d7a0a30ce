# Phase 5: the generic and the domain-specific models. Checkpoints live outside the
# outputs (results/checkpoints/) so a killed job resumes instead of starting over.
# train.gpus > 1 trains one model in that many DistributedDataParallel processes (torchrun):
# the job asks for compute.gpus x train.gpus GPUs. A model with `init` (fine-tuning) starts from
# that model's generator.pt, so it depends on it.


rule train:
    input:
        unpack(get_train_split),
        unpack(get_train_init),
        vgg=get_perceptual_weights,
        code=get_code("scripts/train.py"),
    output:
        generator="results/models/{trained}/generator.pt",
        history=report(
            "results/models/{trained}/history.tsv",
            caption="../report/history.rst",
            category="Train",
        ),
        card="results/models/{trained}/model.yaml",
        budget=get_budget_snapshots(),
        budgets="results/models/{trained}/budgets.tsv",
    log:
        "logs/train/{trained}.log",
    benchmark:
        "benchmarks/train/{trained}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["compute"]["train_threads"]
    resources:
        mem_mb=config["compute"]["train_mem_mb"],
        gpu=get_train_gpus,
    params:
        settings=get_train_settings,
        checkpoints=get_checkpoint_dir,
        data=get_train_data,
        normalization=get_train_normalization,
        device=config["compute"]["device"],
        budgets=BUDGETS,
    script:
        "../scripts/train.py"
