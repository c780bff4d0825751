"""portfleet's collector: get Windows port data off hosts and into the store."""

from __future__ import annotations

__version__ = "0.1.0"
