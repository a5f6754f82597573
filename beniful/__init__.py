"""beniful: the BeniFul backdoor defense (arXiv 2410.14723) as a library.

    from beniful import datasets, models, attacks, detectors, eliminators
"""
from __future__ import annotations

import warnings

# tqdm.auto warns once per Jupyter kernel when ipywidgets is missing and then falls back to text
# bars; the warning would land in every notebook's stored (nbval-checked) output.
warnings.filterwarnings("ignore", message="IProgress not found")

from . import attacks, datasets, detectors, eliminators, metrics, models, profiles, zoo  # noqa: F401

__version__ = "0.1.0"
__all__ = ["attacks", "datasets", "detectors", "eliminators", "metrics", "models", "profiles", "zoo", "__version__"]
