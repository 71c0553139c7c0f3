"""Training errors a user can fix, importable without loading the model libraries (the CLI catches them)."""


class NotEnoughDataError(ValueError):
    """The store cannot support the requested training (window not observed, too few snapshots)."""
