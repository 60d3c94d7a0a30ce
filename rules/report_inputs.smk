# The report's inputs, per-dataset figures and settings (functions only; rules/report.smk uses them).
# report_inputs names every file the report reads, once, and each input's name says where it sits in the
# mapping scisr.report.build_report reads (kind/model/dataset/fold, e.g. scores/mri/mri/1).


def report_inputs():
    """Every file the report reads, named kind/model/dataset/fold (build_report nests them by those names)."""
    tested = [(d, f) for d in EVALUATE for f in test_folds(d)]
    budget_models = get_budget_models() if BUDGETS else {}
    budgeted = sorted({m for models in budget_models.values() for m in models})

    def runs(models):
        """(model, fold) of each training run of these models."""
        return [(m, f) for m in models for f in range(1, model_folds(m) + 1)]

    return {
        **{
            f"scores/{m}/{d}/{f}": f"results/score/{m}/{d}/fold{f}.tsv"
            for m in ALL_MODELS
            for d, f in tested
        },
        **{
            f"predictions/{m}/{d}/{f}": f"results/infer/{m}/{d}/fold{f}"
            for m in ALL_MODELS
            for d, f in tested
        },
        **{
            f"histories/{m}/{f}": f"results/models/{m}/fold{f}/history.tsv"
            for m, f in runs(TRAINED)
        },
        **{f"cards/{m}/{f}": f"{model_dir(m, f)}/model.yaml" for m, f in runs(MODELS)},
        **{f"tests/{d}/{f}": f"results/split/{d}/fold{f}/test" for d, f in tested},
        **{f"splits/{d}": f"results/split/{d}/split.tsv" for d in EVALUATE},
        **{
            f"field_scores/{d}/{m}/{f}": f"results/score/{m}/{d}/fold{f}.field.tsv"
            for d in get_field_datasets()
            for m in ALL_MODELS
            for f in test_folds(d)
        },
        **{
            f"budget_scores/{d}/{m}/{b}/{f}": f"results/budget/score/{m}/{b}/{d}/fold{f}.tsv"
            for d, models in budget_models.items()
            for m in models
            for b in BUDGETS
            for f in test_folds(d)
        },
        **{
            f"budget_tables/{m}/{f}": f"results/models/{m}/fold{f}/budgets.tsv"
            for m, f in runs(budgeted)
        },
        **{
            f"train_benchmarks/{m}/{f}": f"benchmarks/train/{m}/fold{f}.tsv"
            for m, f in runs(TRAINED)
        },
        **{
            f"infer_benchmarks/{m}/{d}/{f}": f"benchmarks/infer/{m}/{d}/fold{f}.tsv"
            for m in ALL_MODELS
            for d, f in tested
        },
    }


def report_dataset_figures():
    """The report's per-dataset figures as named outputs: panel_<dataset>, budget_<dataset>."""
    panels = {
        f"panel_{d}": report(
            f"results/report/panel_{d}.png",
            caption="../report/panel.rst",
            category="Figures",
        )
        for d in EVALUATE
    }
    budgets = {
        f"budget_{d}": report(
            f"results/report/budget_{d}.png",
            caption="../report/budget.rst",
            category="Figures",
        )
        for d in (get_budget_models() if BUDGETS else {})
    }
    return {**panels, **budgets}


def report_settings():
    """What the report needs besides files: names, folds, the statistical plan's settings, captions' facts."""
    return {
        "baseline": BASELINE,
        "generic": GENERIC,
        "imported": list(IMPORTED),
        "scale": config["scale"],
        "title": config["report"]["title"],
        "folds": {d: dataset_folds(d) for d in EVALUATE},
        "primary_metric": config["study"]["primary_metric"],
        "degradations": {
            d: config["datasets"][d]["split"]["degradation"] for d in EVALUATE
        },
        "fields": get_field_datasets(),
        "skipped": dict(SKIPPED),
    }
