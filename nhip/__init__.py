"""Composition root: the `nhip` CLI and the one `Settings` object. No product logic lives here."""
