"""Architecture: the layers hold (pyproject.toml's import-linter contracts), the engine never imports Qt,
and the runtime resources are found."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
import textwrap
from importlib import resources
from pathlib import Path

import pytest

import rnnrbm_studio
from rnnrbm_studio import assets

REPO = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def engine_modules() -> list[str]:
    """Every module of the package but the window's (ui/) and the command line's entry (it opens the window)."""
    names = [info.name for info in pkgutil.walk_packages(rnnrbm_studio.__path__, "rnnrbm_studio.")]
    return ["rnnrbm_studio"] + sorted(n for n in names if not n.startswith("rnnrbm_studio.ui")
                                      and n not in ("rnnrbm_studio.__main__", "rnnrbm_studio.resources"))


ENGINE_MODULES = engine_modules()
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


def test_the_projects_contracts_are_kept(tmp_path, lint_imports_available):
    """The contracts from pyproject.toml, checked by import-linter: layers, no Qt in the engine, no circles."""
    contracts = project_contracts()
    kinds = [contract["type"] for contract in contracts["contracts"]]
    assert kinds == ["layers", "forbidden", "acyclic_siblings"]
    layers = contracts["contracts"][0]
    assert layers["containers"] == ["rnnrbm_studio"] and layers["exhaustive"] is True
    forbidden = contracts["contracts"][1]["forbidden_modules"]
    assert {"PySide6", "pyqtgraph", "rnnrbm_studio.ui"} <= set(forbidden)
    # external forbidden modules need include_external_packages (see the next test)
    result = lint_imports(tmp_path, {**contracts, "include_external_packages": True})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_import_linter_does_catch_a_broken_contract(tmp_path, lint_imports_available):
    """Negative controls: forbidding what the engine imports, and layers upside down, must fail."""
    broken = {"root_package": "rnnrbm_studio", "include_external_packages": True, "contracts": [{
        "name": "control", "type": "forbidden", "source_modules": ["rnnrbm_studio.model"],
        "forbidden_modules": ["numpy"]}]}
    result = lint_imports(tmp_path, broken)
    assert result.returncode != 0 and "BROKEN" in result.stdout
    upside_down = {"root_package": "rnnrbm_studio", "contracts": [{
        "name": "control", "type": "layers", "containers": ["rnnrbm_studio"], "layers": ["model", "training"]}]}
    result = lint_imports(tmp_path, upside_down)
    assert result.returncode != 0 and "BROKEN" in result.stdout


def test_every_module_of_the_package_has_a_layer(tmp_path, lint_imports_available):
    """The layers contract is exhaustive: a new top-level module or folder must be given its place."""
    layers = project_contracts()["contracts"][0]["layers"]
    named = {part.strip() for layer in layers for part in layer.replace(":", "|").split("|")}
    children = {name.split(".")[1] for name in ENGINE_MODULES if name.count(".") >= 1} | {"ui", "__main__"}
    assert children - {"resources"} == named


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
