#!/usr/bin/env bash
# mypy cannot follow setuptools' package-dir mapping (nashc.passes = passes/, ...): this
# makes .mypy-tree/nashc/, a tree of relative symlinks with the installed package layout,
# which pyproject.toml's [tool.mypy] checks (`make lint` runs it first).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .mypy-tree
mkdir -p .mypy-tree/nashc
for f in nashc/*; do
  case "$(basename "$f")" in __pycache__) continue ;; esac
  ln -s "../../$f" ".mypy-tree/nashc/$(basename "$f")"
done
for d in dsl passes runtime targets; do
  ln -s "../../$d" ".mypy-tree/nashc/$d"
done
