#!/usr/bin/env bash
# Downloads the wheels bench/gpu_measure.sh installs on a GPU machine that reaches no package index: every
# package of bench/gpu_wheels.txt as a CPython 3.12 x86-64 wheel into .whl/ (git ignores it), built here where a
# package publishes only its source (antlr4-python3-runtime, pure Python). About 29 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
platforms=()
for tag in manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 \
           manylinux1; do
  platforms+=(--platform "${tag}_x86_64")
done
grep -v '^#' bench/gpu_wheels.txt | while read -r pin; do
  [ -n "$pin" ] || continue
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$pin" 2>/dev/null || python3 -m pip wheel -q --no-deps -w .whl "$pin"
done
ls .whl | wc -l
