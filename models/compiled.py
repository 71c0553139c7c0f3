"""Compiled trees: the propensity booster as machine code, for scoring a whole shop at once.

LightGBM's own `predict` walks every tree node by node through generic code: about 120k rows/s on this
machine's two cores for the champion's 300 trees. lleaves (LLVM) compiles the same trees into one
function per model, about ten times faster, with the same numbers to rounding (the tests hold them
within 1e-6 of the booster's).

Compiling takes a few seconds, so the machine code is cached by the model's content: `cache_dir /
<sha256 of the model text>.so`. A champion is compiled once, by whichever process scores with it first
(the service, `nhip score`), and loaded in milliseconds after.

When lleaves (or the LLVM it links) is not installed, or compiling fails, scoring stays on the booster:
`CompiledTrees.load` returns None and says why, and the model reports which one it scores with
(`PropensityModel.scorer`).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

COMPILER = "lleaves"


class CompiledTrees:
    """A LightGBM binary model compiled by lleaves; `predict` gives what `Booster.predict` gives."""

    def __init__(self, compiled, key: str):
        self._compiled = compiled
        self.key = key

    @classmethod
    def load(cls, model_text: str, cache_dir: Path | None) -> tuple[CompiledTrees | None, str | None]:
        """The compiled model for LightGBM `model_text`, from the cache when there; (None, why) when it
        cannot be compiled here."""
        try:
            import lleaves
        except ImportError as exc:
            return None, f"{COMPILER} is not installed ({exc})"
        key = hashlib.sha256(model_text.encode("utf-8")).hexdigest()[:24]
        try:
            with tempfile.TemporaryDirectory(prefix="nhip-trees-") as tmp:
                text_path = Path(tmp) / "model.txt"
                text_path.write_text(model_text, encoding="utf-8")
                compiled = lleaves.Model(model_file=str(text_path))
                if cache_dir is None:
                    compiled.compile()
                else:
                    cache_dir.mkdir(parents=True, exist_ok=True)
                    target = cache_dir / f"{key}.so"
                    if target.exists():
                        compiled.compile(cache=str(target))
                    else:
                        # Compile to a private name, then rename: two processes compiling the same
                        # champion at once never read each other's half-written file.
                        partial = cache_dir / f".{key}.{os.getpid()}.so"
                        compiled.compile(cache=str(partial))
                        os.replace(partial, target)
        except Exception as exc:  # LLVM errors are not one exception type; the booster still scores
            return None, f"{COMPILER} could not compile the model: {type(exc).__name__}: {exc}"
        return cls(compiled, key), None

    def predict(self, matrix: np.ndarray, n_jobs: int = 2) -> np.ndarray:
        """P(class 1) per row of a float64 matrix in the booster's feature order."""
        return np.asarray(self._compiled.predict(np.ascontiguousarray(matrix, dtype=np.float64), n_jobs=n_jobs))
