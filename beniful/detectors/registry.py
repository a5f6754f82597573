from __future__ import annotations

from ..registry import Registry

DETECTORS: Registry = Registry("detector")
