"""The product's settings as shipped: every NHIP_* setting at its default, whatever the environment holds.

Benchmarks measure the product a user gets; a setting they vary on purpose is labelled where it is.
"""

from __future__ import annotations

from nhip.settings import Settings

SHIPPED = Settings.model_construct()
