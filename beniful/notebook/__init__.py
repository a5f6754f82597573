"""Glue for the papermill notebooks in ``notebooks/`` and the book's pages, one concept a module.

Every notebook takes the same parameters (``profile``, ``dataset``, ``attacks``, ``seed``,
``device``) and must reject bad values before any model is trained, label its output with how it
was made, draw in one colour-blind-safe style and write its tidy CSV to the same place. Keeping
that here keeps the notebooks thin and their behaviour identical::

    from beniful import notebook as nb
    run = nb.setup(profile="quick", dataset=None, attacks=None, seed=0, device="auto")
    print(run.provenance)            # profile=quick / dataset=mnist5k / device=cpu / seeds=0
    tm = zoo.get("badnets", **run.zoo_kwargs(seed=run.seeds[0]))

Modules: :mod:`.run` (parameters, :class:`Run`), :mod:`.budgets` (each profile's per-method
budget), :mod:`.style`, :mod:`.tables`, :mod:`.figures`, :mod:`.ablation_figures` (table4, fig3),
:mod:`.reading` (the results tree), :mod:`.references` (BackdoorBench's published numbers), :mod:`.claims` (claims, targets and their one thresholds
table), :mod:`.params` (every method's parameters for the setup page). Paths come from
:mod:`beniful.paths`.
"""
from __future__ import annotations

from ..paths import data_root, repo_root, results_root
from .ablation_figures import (clean_fraction_table, consistency_split, consistency_table, layer_signal_table,
                               plot_consistency,
                               plot_consistency_split, plot_form_lambda, plot_layer_ablation)
from .budgets import (ABLATION_DATASETS, BUDGETS, DETECTION_TEST_IMAGES, LAYERS, LEFT_OUT, NOTEBOOK_DEFAULTS, QUICK_BUDGET,
                      QUICK_CLEAN_IMAGES, QUICK_DETECTION_TEST_IMAGES, SMOKE_BUDGET, budget, detection_test_images,
                      ablation_datasets, kwargs_note, method_params, panel, test_subset)
from .claims import (ACC_DROP_BOUND, ACC_DROP_FLOOR, ASR_FLOOR, ASR_TARGET, CONTROLS, against_baselines, KNOWN_ACC_COST, PAPER_DATASETS, SUMMARY, THRESHOLDS, Threshold, acc_drop_tolerance,
                     claims_table, headline_comparison,
                     qualitative_detection, qualitative_elimination, setting_note, threshold, thresholds_table)
from .figures import dataset_axes, layer_features, pca_2d, plot_feature_pca, plot_metric_bars, plot_trigger_grid, separation
from .params import default_of, family_table, paper_settings_table, parameter_table, per_dataset
from .reading import collect_results, describe_provenance, read_result
from .references import BACKDOORBENCH_SOURCE, backdoorbench_table, beside_backdoorbench
from .run import HEADLINE, REGISTRIES, Run, choose, registry, set_threads, setup
from .style import palette, style
from .tables import display_path, glue, sanitize, seed_table, show_table, table_name, write_table

__all__ = [
    "BACKDOORBENCH_SOURCE", "backdoorbench_table", "beside_backdoorbench",
    "ACC_DROP_BOUND", "ACC_DROP_FLOOR", "ASR_FLOOR", "ASR_TARGET", "CONTROLS", "against_baselines", "KNOWN_ACC_COST", "acc_drop_tolerance", "BUDGETS", "DETECTION_TEST_IMAGES", "SMOKE_BUDGET",
    "budget", "HEADLINE", "LAYERS", "LEFT_OUT", "panel", "ABLATION_DATASETS", "ablation_datasets", "REGISTRIES", "registry", "NOTEBOOK_DEFAULTS", "PAPER_DATASETS", "QUICK_BUDGET",
    "QUICK_CLEAN_IMAGES", "QUICK_DETECTION_TEST_IMAGES",
    "SUMMARY", "THRESHOLDS", "Run", "Threshold", "choose", "clean_fraction_table", "claims_table", "collect_results", "consistency_split",
    "consistency_table", "data_root", "dataset_axes", "default_of", "describe_provenance", "detection_test_images", "display_path",
    "glue", "headline_comparison", "kwargs_note", "layer_features", "layer_signal_table", "method_params",
    "family_table", "paper_settings_table", "palette", "parameter_table", "per_dataset", "pca_2d", "plot_consistency", "plot_consistency_split", "plot_feature_pca",
    "plot_form_lambda", "plot_layer_ablation", "plot_metric_bars", "plot_trigger_grid", "qualitative_detection",
    "qualitative_elimination", "read_result", "repo_root", "results_root", "sanitize", "seed_table",
    "separation", "set_threads", "setting_note", "setup", "show_table", "style", "table_name", "test_subset",
    "threshold", "thresholds_table", "write_table",
]
