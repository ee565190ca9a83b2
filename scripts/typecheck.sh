#!/usr/bin/env bash
# Type-check gflow/ and envs/ with mypy under their installed module names. envs/ installs as
# gflow.envs (a setuptools package-dir mapping that mypy cannot follow), so mypy runs `-p gflow`
# over a tree of links (build/mypy-tree) that lays envs/ inside gflow/; paths are printed as in
# the repository. Extra arguments go to mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
tree="$PWD/build/mypy-tree"
rm -rf "$tree" && mkdir -p "$tree/gflow"
for f in gflow/*; do
  [ "$(basename "$f")" = __pycache__ ] || ln -s "$PWD/$f" "$tree/gflow/"
done
ln -s "$PWD/envs" "$tree/gflow/envs"
set +e
MYPYPATH="$tree" .venv/bin/mypy -p gflow "$@" > "$tree.out" 2>&1
rc=$?
set -e
sed -e "s#$PWD/##g" -e "s#build/mypy-tree/gflow/envs/#envs/#g" -e "s#build/mypy-tree/##g" \
  "$tree.out"
exit $rc
