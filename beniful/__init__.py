"""beniful: the BeniFul backdoor defense (arXiv 2410.14723) as a library.

    from beniful import datasets, models, attacks, detectors, eliminators
"""
from __future__ import annotations

from . import attacks, datasets, detectors, eliminators, metrics, models, profiles, zoo  # noqa: F401

__version__ = "0.1.0"
__all__ = ["attacks", "datasets", "detectors", "eliminators", "metrics", "models", "profiles", "zoo", "__version__"]
