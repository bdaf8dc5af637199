"""Architecture: the engine never imports Qt, and the runtime resources are found."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest

from rnnrbm_studio import assets

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
ENGINE_MODULES = ["rnnrbm_studio.errors", "rnnrbm_studio.assets", "rnnrbm_studio.pianoroll", "rnnrbm_studio.model",
                  "rnnrbm_studio.checkpoint", "rnnrbm_studio.corpus", "rnnrbm_studio.train",
                  "rnnrbm_studio.cli.engine", "rnnrbm_studio.cli"]
QT_MODULES = ("PySide6", "pyqtgraph", "shiboken6", "superqt", "rnnrbm_studio.ui")


def project_contracts() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint_imports(tmp_path: Path, importlinter: dict) -> subprocess.CompletedProcess:
    """Run lint-imports on a config holding `importlinter` as [tool.importlinter] (no cache files left)."""
    lines = ["[tool.importlinter]"]
    lines += [f"{k} = {_toml(v)}" for k, v in importlinter.items() if k != "contracts"]
    for contract in importlinter["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        lines += [f"{k} = {_toml(v)}" for k, v in contract.items()]
    config = tmp_path / "importlinter.toml"
    config.write_text("\n".join(lines) + "\n")
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


@pytest.fixture
def lint_imports_available():
    if not LINT_IMPORTS.exists():
        pytest.skip(f"import-linter is not installed in this environment ({LINT_IMPORTS})")


def test_the_engine_contract_is_kept(tmp_path, lint_imports_available):
    """The contract from pyproject.toml, checked by import-linter."""
    contracts = project_contracts()
    forbidden = contracts["contracts"][0]["forbidden_modules"]
    assert {"PySide6", "pyqtgraph", "rnnrbm_studio.ui"} <= set(forbidden)
    # external forbidden modules need include_external_packages (see the next test)
    result = lint_imports(tmp_path, {**contracts, "include_external_packages": True})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_import_linter_does_catch_a_broken_contract(tmp_path, lint_imports_available):
    """A negative control: forbidding something the engine does import must fail."""
    broken = {"root_package": "rnnrbm_studio", "include_external_packages": True, "contracts": [{
        "name": "control", "type": "forbidden", "source_modules": ["rnnrbm_studio.model"],
        "forbidden_modules": ["numpy"]}]}
    result = lint_imports(tmp_path, broken)
    assert result.returncode != 0 and "BROKEN" in result.stdout


def test_lint_imports_passes_with_the_projects_own_configuration(lint_imports_available):
    result = subprocess.run([str(LINT_IMPORTS), "--no-cache", "--no-logo"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_engine_modules_import_without_qt_in_a_fresh_interpreter():
    """Import each engine module in turn in a new process; none may bring Qt or the UI with it."""
    script = textwrap.dedent(f"""
        import importlib, json, sys
        report = {{}}
        for name in {ENGINE_MODULES!r}:
            importlib.import_module(name)
            report[name] = sorted(m for m in sys.modules if m.split(".")[0] in {QT_MODULES!r}
                                  or m == "rnnrbm_studio.ui" or m.startswith("rnnrbm_studio.ui."))
        print(json.dumps(report))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    import json

    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(report) == ENGINE_MODULES
    offenders = {name: modules for name, modules in report.items() if modules}
    assert not offenders, f"Qt/UI modules imported by the engine: {offenders}"


def test_the_default_model_path_points_into_resources():
    path = assets.default_model_path()
    assert path.name == "default_model.pt"
    assert path.parent.name == "resources"
    # in this checkout (editable install or plain sys.path) resources/ is the top-level folder
    assert path.parent.resolve() == (REPO / "resources").resolve()


def test_the_resources_package_resolves_to_the_resources_folder():
    folder = Path(str(resources.files("rnnrbm_studio.resources")))
    assert folder.resolve() == (REPO / "resources").resolve()
    assert assets.resource_path("__init__.py").exists()
    assert assets.resource_path(assets.APP_ICON).parent.resolve() == (REPO / "resources").resolve()
