"""Print the longest functions and the longest files of a source tree (a code-shape measure for reviews).

    python tools/code_shape.py [ROOT] [--top N] [--dirs src examples] [--exclude examples/predict.py ...]
        [--limit N]

A function's length is its lines of code: the lines of its body that hold code, not counting its signature,
its docstring, comments and blank lines (a nested function counts inside its parent and on its own too).
Files count every line. With ``--limit N`` the exit status is 1 when a function is longer than N lines.
"""

from __future__ import annotations

import argparse
import ast
import io
import sys
import tokenize
from pathlib import Path

__all__ = ["code_lines", "function_lengths", "main", "measure"]

_NOT_CODE = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}


def code_lines(text: str) -> set[int]:
    """The line numbers of ``text`` that hold a code token (a multi-line token counts on each of its lines)."""
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in _NOT_CODE:
            lines.update(range(token.start[0], token.end[0] + 1))
    return lines


def _docstring_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)):
                continue
            if isinstance(first.value.value, str) and first.end_lineno is not None:
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def function_lengths(text: str, filename: str = "<text>") -> list[tuple[int, int, str]]:
    """``(lines of code, line number, name)`` of every function in ``text`` (see the module docstring)."""
    tree = ast.parse(text, filename=filename)
    code = code_lines(text) - _docstring_lines(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
            body = range(node.body[0].lineno, node.end_lineno + 1)
            out.append((sum(line in code for line in body), node.lineno, node.name))
    return out


def measure(
    root: Path, dirs: list[str], exclude: tuple[str, ...] = ()
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """The functions (lines of code, ``path:line name``) and files (lines, path) under ``root / dirs``, longest
    first; paths under an ``exclude`` prefix (relative to ``root``) are left out."""
    functions: list[tuple[int, str]] = []
    files: list[tuple[int, str]] = []
    for folder in dirs:
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(exclude):
                continue
            text = path.read_text(encoding="utf-8")
            files.append((len(text.splitlines()), rel))
            functions += [(n, f"{rel}:{line} {name}") for n, line, name in function_lengths(text, str(path))]
    return sorted(functions, reverse=True), sorted(files, reverse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "root",
        nargs="?",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="repository root (default: this repository)",
    )
    parser.add_argument("--top", type=int, default=10, help="how many of each to list (default: %(default)s)")
    parser.add_argument(
        "--dirs", nargs="+", default=["src", "examples"], help="folders to measure (default: %(default)s)"
    )
    parser.add_argument("--exclude", nargs="*", default=[], help="path prefixes to leave out, relative to ROOT")
    parser.add_argument("--limit", type=int, default=None, help="exit 1 if a function has more lines of code")
    args = parser.parse_args(argv)
    functions, files = measure(args.root, args.dirs, tuple(args.exclude))
    print(f"{len(files)} files, {sum(n for n, _ in files)} lines, {len(functions)} functions")
    print("longest functions (lines of code):")
    for n, name in functions[: args.top]:
        print(f"  {n:5d}  {name}")
    print("longest files (lines):")
    for n, name in files[: args.top]:
        print(f"  {n:5d}  {name}")
    if args.limit is not None:
        over = [name for n, name in functions if n > args.limit]
        print(f"{len(over)} function(s) over {args.limit} lines of code")
        return 1 if over else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
