# Phase 5: the generic and the domain-specific models. Checkpoints live outside the
# outputs (results/checkpoints/) so a killed job resumes instead of starting over.
# train.gpus > 1 trains one model in that many DistributedDataParallel processes (torchrun):
# the job asks for compute.gpus x train.gpus GPUs. A model with `init` (fine-tuning) starts from
# that model's generator.pt, so it depends on it. Under study.folds k > 1 a model that learns from a
# cross-validated dataset is trained once per fold ({fold}: results/models/<model>/fold<i>/); the generic
# model (single holdout) is fold1 only.


rule train:
    input:
        unpack(get_train_split),
        unpack(get_train_init),
        vgg=get_perceptual_weights,
        code=get_code("scripts/train.py"),
    output:
        generator="results/models/{trained}/fold{fold}/generator.pt",
        history=report(
            "results/models/{trained}/fold{fold}/history.tsv",
            caption="../report/history.rst",
            category="Train",
        ),
        card="results/models/{trained}/fold{fold}/model.yaml",
        budget=expand(
            "results/models/{{trained}}/fold{{fold}}/budget/{iterations}.pt",
            iterations=BUDGETS,
        ),
        budgets="results/models/{trained}/fold{fold}/budgets.tsv",
    log:
        "logs/train/{trained}/fold{fold}.log",
    benchmark:
        "benchmarks/train/{trained}/fold{fold}.tsv"
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
        folds=get_train_folds,
        normalization=get_train_normalization,
        device=config["compute"]["device"],
        budgets=BUDGETS,
    script:
        "../scripts/train.py"
