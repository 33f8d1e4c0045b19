"""The project as a user installs it: one `mtmc` command, imports that flow one way, no sys.path tricks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from configs import REPO_ROOT, data_root

PACKAGES = ("configs", "pipeline", "reid", "trackers", "tools")
MTMC = Path(sys.executable).with_name("mtmc")
# stage -> project packages it may import (data flows one way: no back-edges)
ALLOWED = {
    "configs": set(),
    "trackers": {"configs"},
    "reid": {"configs"},
    "pipeline": {"configs", "trackers", "reid"},
    "tools": {"configs", "trackers", "reid", "pipeline", "tools"},
}


def project_modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            parts = path.relative_to(REPO_ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules ``path`` imports anywhere in it (function-level imports count: they hide cycles)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules)
    return found - {name}


def test_no_import_cycles_and_stages_import_only_upstream():
    modules = project_modules()
    graph = {name: imports_of(path, name, modules) for name, path in modules.items()}
    for name, targets in graph.items():
        stage = name.split(".")[0]
        wrong = {t for t in targets if t.split(".")[0] not in ALLOWED[stage] | {stage}}
        assert not wrong, f"{name} imports {wrong}: {stage}/ may only use {sorted(ALLOWED[stage])}"
    visiting, done = [], set()

    def visit(name: str) -> None:
        if name in done:
            return
        assert name not in visiting, "import cycle: " + " -> ".join(visiting[visiting.index(name):] + [name])
        visiting.append(name)
        for target in sorted(graph[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_trackers_are_pure_numpy():
    for path in (REPO_ROOT / "trackers").rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {(n.module or "").split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        assert not names & {"torch", "cv2", "reid", "pipeline", "onnxruntime"}, f"{path}: {names}"


def test_no_sys_path_edits_outside_tests():
    offenders = [str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.glob("**/*.py")
                 if not p.is_relative_to(REPO_ROOT / "tests") and ".venv" not in p.parts
                 and "sys.path." in p.read_text()]
    assert not offenders


def mtmc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(MTMC), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(not MTMC.is_file(), reason=f"the mtmc command is not installed beside {sys.executable} "
                                                "(pip install -e .)")
def test_mtmc_command_lists_every_tool_and_separates_usage_errors(tmp_path):
    from tools.cli import COMMANDS

    shown = mtmc("--help", cwd=tmp_path)
    assert shown.returncode == 0 and all(name in shown.stdout for name in COMMANDS)
    for name in COMMANDS:  # every command's module loads and has a --help
        assert mtmc(name, "--help", cwd=tmp_path).returncode == 0, name
    assert mtmc("nope", cwd=tmp_path).returncode == 64
    assert mtmc("run", "--sources", "a.mp4", "--no-such-flag", cwd=tmp_path).returncode == 64
    missing = mtmc("run", "--sources", "absent.mp4", "--progress", "false", cwd=tmp_path)
    assert missing.returncode == 1 and "absent.mp4: video file not found" in missing.stderr
    assert "Traceback" not in missing.stderr


TUD_CAMPUS = data_root() / "mot15" / "TUD-Campus" / "TUD-Campus.mp4"
YOLOX = data_root() / "models" / "yolox_nano.onnx"


@pytest.mark.skipif(not MTMC.is_file() or not TUD_CAMPUS.is_file() or not YOLOX.is_file(),
                    reason=f"mtmc not installed, or TUD-Campus / YOLOX absent under {data_root()}")
def test_mtmc_run_from_outside_the_repo_with_a_detector_model_file(tmp_path):
    """A user's command: a model file as --detector, a working directory that is not the checkout; one good
    and one missing source exit with 2 (partial failure) and the good camera's outputs are complete."""
    run = mtmc("run", "--sources", str(TUD_CAMPUS), str(tmp_path / "gone.mp4"), "--detector", str(YOLOX),
               "--max_frames", "20", "--progress", "false", "--out", "out", cwd=tmp_path)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "gone.mp4: video file not found" in run.stderr and "Traceback" not in run.stderr
    rows = (tmp_path / "out" / "TUD-Campus.txt").read_text().splitlines()
    assert len(rows) > 20 and {int(r.split(",")[0]) for r in rows} <= set(range(1, 21))
