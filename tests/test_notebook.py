"""The quickstart notebook runs top to bottom on small demo data in a throw-away workspace."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "01-quickstart.ipynb"
CHECK_PYTHON = "import sys; print('kernel-prefix:' + sys.prefix)"


def _output_text(cell) -> str:
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") in ("execute_result", "display_data"):
            parts.append(str(output.get("data", {}).get("text/plain", "")))
    return "".join(parts)


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    kernelspec = pytest.importorskip("ipykernel.kernelspec")

    monkeypatch.setenv("NHIP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("NHIP_NOTEBOOK_CUSTOMERS", "300")
    monkeypatch.setenv("NHIP_NOTEBOOK_DAYS", "200")
    monkeypatch.delenv("NHIP_MLFLOW_URI", raising=False)
    monkeypatch.delenv("NHIP_QDRANT_URL", raising=False)
    # A `python3` kernel spec running this interpreter, first on the Jupyter path: a python3 spec in
    # ~/.local/share/jupyter or elsewhere must not send the notebook to a Python without the project.
    jupyter_dir = tmp_path / "jupyter"
    kernelspec.write_kernel_spec(jupyter_dir / "kernels" / "python3")
    monkeypatch.setenv("JUPYTER_PATH", str(jupyter_dir))
    # Connection files and IPython state in the test folder: no user startup scripts, no writes to ~.
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "stored outputs"
    nb.cells.append(nbformat.v4.new_code_cell(CHECK_PYTHON))

    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=600,
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell

    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code_cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    assert f"kernel-prefix:{sys.prefix}" in _output_text(code_cells[-1])

    metrics = [c for c in code_cells if "propensity-metrics" in c.metadata.get("tags", [])]
    assert len(metrics) == 1
    text = _output_text(metrics[0])
    assert all(word in text for word in ("auc", "model", "recency", "bgnbd", "pareto_nbd")), text
    clv = [c for c in code_cells if "clv-answers" in c.metadata.get("tags", [])]
    assert len(clv) == 1
    text = _output_text(clv[0])
    assert all(word in text for word in ("pareto_nbd", "gamma_gamma", "expected_spend", "model")), text
    assert (tmp_path / "home" / "store" / "manifest.json").exists()
