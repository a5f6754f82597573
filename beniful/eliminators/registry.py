from __future__ import annotations

from ..registry import Registry

ELIMINATORS: Registry = Registry("eliminator")
