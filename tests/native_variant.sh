#!/usr/bin/env bash
# Builds an instrumented copy of the project for the CPU-side checks of tests/README.md:
#   tests/native_variant.sh asan DIR       fastlmk._C with AddressSanitizer (and UBSan)
#   tests/native_variant.sh coverage DIR   fastlmk._C with gcov counters (-O0 --coverage)
#   tests/native_variant.sh plain DIR      the release build (tests/mutation.py mutates this copy)
# DIR receives a copy of the working tree with fastlmk._C built in place (no CUDA extension); run the tests
# from it with PYTHONPATH=DIR, as tests/README.md shows.
set -euo pipefail
mode="$1"
dir="$(realpath -m "$2")"
src="$(cd "$(dirname "$0")/.." && pwd)"
case "$mode" in
  asan) flags="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g" ;;
  coverage) flags="-O0 --coverage" ;;
  plain) flags="" ;;
  *) echo "mode must be asan, coverage or plain, got '$mode'" >&2; exit 2 ;;
esac
if [ -e "$dir" ] && [ ! -e "$dir/.fastlmk-variant" ]; then
  echo "$dir exists and is not a variant built by this script: choose a new folder" >&2; exit 2
fi
rm -rf "$dir" && mkdir -p "$dir" && touch "$dir/.fastlmk-variant"
tar -C "$src" --exclude=./.git --exclude=./build --exclude='*.so' --exclude='*.egg-info' --exclude=__pycache__ \
  -cf - . | tar -C "$dir" -xf -
# the installed layout: fastlmk.kernels and fastlmk.models live in kernels/ and models/ (setup.py package_dir)
ln -sfn ../kernels "$dir/fastlmk/kernels"
ln -sfn ../models "$dir/fastlmk/models"
cd "$dir"
FASTLMK_CUDA=0 FASTLMK_CXXFLAGS="$flags" python setup.py -q build_ext --inplace
echo "built $mode variant in $dir"
