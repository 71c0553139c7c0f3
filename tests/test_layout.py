"""Architecture rules that are easy to break without noticing."""

import ast
import importlib
import re
import subprocess
import sys
from pathlib import Path


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


# -- the layers, read from the source (imports inside functions included) --------------------------------

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("features", "models", "training", "serving", "nhip", "synthetic")


def _python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module an `import` or `from … import` in the file names, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _importers(package: str, forbidden: tuple[str, ...]) -> dict[str, set[str]]:
    found = {}
    for path in _python_files(package):
        bad = {m for m in _imports(path) if m.split(".")[0] in forbidden or m in forbidden}
        if bad:
            found[str(path.relative_to(ROOT))] = bad
    return found


def test_models_import_nothing_of_the_later_stages():
    assert _importers("models", ("features", "training", "serving")) == {}


def test_serving_imports_no_training_code():
    assert _importers("serving", ("training",)) == {}


def test_nothing_imports_the_cli():
    users = {path: {m for m in mods if m.startswith("nhip.cli")} for package in PACKAGES
             for path, mods in _importers(package, ("nhip",)).items()}
    assert {path: mods for path, mods in users.items() if mods} == {}


# The entry points that read Settings: the CLI, the service's start and the notebook APIs (features, activation).
ENTRY_POINTS = {"nhip/cli.py", "nhip/settings.py", "serving/service.py", "features/__init__.py",
                "serving/activation/__init__.py"}


def test_settings_are_read_only_at_the_entry_points():
    readers = {}
    for package in PACKAGES:
        for path in _python_files(package):
            name = str(path.relative_to(ROOT))
            if name not in ENTRY_POINTS and any(m.startswith("nhip.settings") for m in _imports(path)):
                readers[name] = "imports nhip.settings"
    assert readers == {}


# Parameters that carry a setting's value: below the entry points they are always passed, never
# defaulted, so no path can silently use another value than the one configured.
SETTING_PARAMETERS = {"identity", "max_links", "min_events", "min_events_to_score", "prior_strength",
                      "quiet", "quiet_start", "quiet_end", "margin", "max_ece", "tracking", "config"}


def _defaulted_parameters(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            with_defaults = positional[len(positional) - len(args.defaults):] if args.defaults else []
            with_defaults += [a for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
            found += [f"{node.name}({a.arg}=…)" for a in with_defaults if a.arg in SETTING_PARAMETERS]
    return found


def test_no_setting_has_a_hidden_default_below_the_entry_points():
    # Estimators are exempt: scikit-learn's contract gives every hyperparameter a default.
    hidden = {str(path.relative_to(ROOT)): found for package in ("features", "training", "serving")
              for path in _python_files(package)
              if str(path.relative_to(ROOT)) not in ENTRY_POINTS and (found := _defaulted_parameters(path))}
    assert hidden == {}


SQL = re.compile(r"\b(SELECT|INSERT|DELETE|UPDATE|CREATE|DROP)\b\s+[\w*(]", re.IGNORECASE)


def test_cli_command_bodies_hold_no_sql():
    tree = ast.parse((ROOT / "nhip" / "cli.py").read_text(encoding="utf-8"))
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    calls = [n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)]
    assert [s for s in strings if SQL.search(s)] == []
    assert not {"execute", "sql", "register"} & set(calls)


# -- documentation that names code names code that exists ------------------------------------------------

REFERENCE = re.compile(r"`((?:features|models|training|serving|nhip|synthetic)(?:\.[A-Za-z_]\w*)+)(?:\(\))?`")


def _resolves(reference: str) -> bool:
    parts = reference.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(found, attribute):
                return False
            found = getattr(found, attribute)
        return True
    return False


def test_docstrings_and_docs_cite_code_that_exists():
    documents = [p for package in (*PACKAGES, "benchmarks", "tests") for p in _python_files(package)]
    documents += [ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "mappings" / "README.md"]
    missing = sorted({(str(p.relative_to(ROOT)), m.group(1)) for p in documents
                      for m in REFERENCE.finditer(p.read_text(encoding="utf-8")) if not _resolves(m.group(1))})
    assert missing == []
