"""The examples' shape: no import cycles (counting every import statement, function-level ones too) and no
function over 60 lines of code (tools/import_cycles.py, tools/code_shape.py); and the checkers themselves find
what they look for."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_tools_{name}", ROOT / "tools" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


import_cycles = _tool("import_cycles")
code_shape = _tool("code_shape")


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def test_no_import_cycles_in_examples() -> None:
    assert import_cycles.find_cycles(ROOT, ["examples"]) == []


def test_no_import_cycles_in_the_library() -> None:
    assert import_cycles.find_cycles(ROOT, ["src/region_attention"]) == []


def test_a_cycle_through_a_function_level_import_is_found(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from pkg.b import g\n",
            "pkg/b.py": "def g():\n    from . import a\n    return a\n",
            "pkg/c.py": "import pkg.a\n",
        },
    )
    assert import_cycles.find_cycles(tmp_path, ["pkg"]) == [["pkg.a", "pkg.b", "pkg.a"]]


def test_a_cycle_through_a_package_init_is_found(tmp_path: Path) -> None:
    # sub/__init__ imports sub.x, which needs pkg.y, which imports from sub: importing pkg.y runs sub/__init__
    _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/sub/__init__.py": "from .x import f\n",
            "pkg/sub/x.py": "if False:\n    import pkg.y\ndef f():\n    pass\n",
            "pkg/y.py": "from pkg.sub.z import T\n",
            "pkg/sub/z.py": "T = 1\n",
        },
    )
    assert import_cycles.find_cycles(tmp_path, ["pkg"]) == [["pkg.sub", "pkg.sub.x", "pkg.y", "pkg.sub"]]
    # a module's own packages are not a cycle: pkg.sub.x importing pkg.sub.z needs pkg.sub, which is running
    (tmp_path / "pkg/sub/x.py").write_text("from . import z\n")
    assert import_cycles.find_cycles(tmp_path, ["pkg"]) == []


def test_no_long_functions_in_the_examples() -> None:
    functions, _ = code_shape.measure(ROOT, ["examples"])
    assert [name for n, name in functions if n > 60] == []


def test_code_shape_counts_code_lines_only() -> None:
    text = '''
    def f(
        a,
        b,
    ):
        """Docstring
        over lines."""
        # a comment

        x = [
            1,  # trailing
        ]
        return x
    '''
    assert code_shape.function_lengths(textwrap.dedent(text)) == [(4, 2, "f")]


def test_sys_path_bootstrap_only_in_scripts() -> None:
    """A module of ``examples/`` that edits ``sys.path`` is one that runs as a script, and does it once."""
    for path in sorted((ROOT / "examples").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        edits = text.count("sys.path.insert") + text.count("sys.path.append")
        if edits:
            is_script = path.name == "__main__.py" or 'if __name__ == "__main__":' in text
            assert is_script and edits == 1, f"{path.relative_to(ROOT)}: {edits} sys.path edit(s), script: {is_script}"
