"""Architecture rules that are easy to break without noticing."""

import subprocess
import sys


def _modules_after(import_line: str) -> set[str]:
    code = f"import sys; {import_line}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_serving_never_imports_training():
    loaded = _modules_after("import serving.service, serving.scoring, serving.champions")
    assert not {m for m in loaded if m == "training" or m.startswith("training.")}


def test_the_cli_starts_without_loading_heavy_libraries():
    loaded = _modules_after("import nhip.cli")
    assert not loaded & {"sentence_transformers", "torch", "mlflow", "bentoml", "lightgbm"}


def test_importing_settings_creates_nothing(tmp_path):
    home = tmp_path / "home"
    code = "from nhip.settings import get_settings; s = get_settings(); s.store_path; s.tracking.uri"
    subprocess.run([sys.executable, "-c", code], check=True, env={"NHIP_HOME": str(home), "PATH": ""})
    assert not home.exists()


def test_every_command_runs_without_loading_model_libraries_up_front():
    # handled wraps every command; catching training errors must not import LightGBM or scikit-learn.
    loaded = _modules_after("import nhip.cli as cli; cli.handled(lambda: None)()")
    assert not loaded & {"lightgbm", "sklearn", "mlflow", "bentoml", "torch"}
