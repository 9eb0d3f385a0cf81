"""Print the longest functions and the longest files of a source tree (a code-shape measure for reviews).

    python tools/code_shape.py [ROOT] [--top N] [--dirs src examples]

Functions are measured from their ``def`` line to their last line (decorators and docstrings included), as
Python's ``ast`` reports them; nested functions count on their own too. Files count every line.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def measure(root: Path, dirs: list[str]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    functions: list[tuple[int, str]] = []
    files: list[tuple[int, str]] = []
    for folder in dirs:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(root).as_posix()
            files.append((len(text.splitlines()), rel))
            for node in ast.walk(ast.parse(text, filename=str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                    functions.append((node.end_lineno - node.lineno + 1, f"{rel}:{node.lineno} {node.name}"))
    return sorted(functions, reverse=True), sorted(files, reverse=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1],
                        help="repository root (default: this repository)")
    parser.add_argument("--top", type=int, default=10, help="how many of each to list (default: %(default)s)")
    parser.add_argument("--dirs", nargs="+", default=["src", "examples"],
                        help="folders to measure (default: %(default)s)")
    args = parser.parse_args(argv)
    functions, files = measure(args.root, args.dirs)
    print(f"{len(files)} files, {sum(n for n, _ in files)} lines, {len(functions)} functions")
    print("longest functions (lines):")
    for n, name in functions[: args.top]:
        print(f"  {n:5d}  {name}")
    print("longest files (lines):")
    for n, name in files[: args.top]:
        print(f"  {n:5d}  {name}")


if __name__ == "__main__":
    main()
