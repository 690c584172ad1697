#!/usr/bin/env bash
# One-command GPU acceptance of fastlmk on a machine with one H100/H200, no network, torch (CUDA 13),
# triton, nvcc and perhaps compute-sanitizer installed. Run from anywhere:
#
#     bash benchmarks/gpu_acceptance.sh OUTDIR
#
# Steps (each under `timeout`, each runs whatever the previous ones did; none stops the script):
#   1 build     the extensions, nothing downloaded: `FASTLMK_CUDA=1 pip install --no-build-isolation --no-deps
#               -e .` (or `setup.py build_ext --inplace` when this checkout is already installed editable)
#                                                                   -> OUTDIR/build.log
#   2 tests     the whole suite on the GPU (every backend, gpu tests included)
#                                                                   -> OUTDIR/pytest.log, OUTDIR/junit.xml
#   3 sanitize  compute-sanitizer memcheck and racecheck over benchmarks/gpu_sanitize_cases.py (one small case
#               per CUDA and Triton kernel)                         -> OUTDIR/sanitize_{memcheck,racecheck}.log
#   4 bench     fastlmk bench --device cuda --quick                 -> OUTDIR/bench.md, OUTDIR/bench.log
#   5 summary   each step's status and time                         -> OUTDIR/summary.txt
#
# The whole run is bounded by FASTLMK_ACCEPT_BUDGET seconds (default 450: under 8 minutes with the kill
# margins); a step's timeout is its cap, shortened so that the later steps keep their minimum. Exit status: 0
# when every step passed (SKIPPED for a missing tool or REFUSED by compute-sanitizer count as passed, and say
# so), else 1.
# Knobs: PYTHON (default: python3 on PATH), FASTLMK_ACCEPT_BUDGET, FASTLMK_ACCEPT_FULL_BENCH=1 (the full
# bench instead of --quick), FASTLMK_ACCEPT_PYTEST_ARGS (extra pytest arguments), COMPUTE_SANITIZER (path).
set -u

if [ $# -lt 1 ] || [ -z "${1:-}" ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 2

PY=${PYTHON:-$(command -v python3 || command -v python || echo python3)}
BUDGET=${FASTLMK_ACCEPT_BUDGET:-450}
START=$(date +%s)
SUMMARY="$OUT/summary.txt"
NPROC=$(nproc 2>/dev/null || echo 4)
OVERALL=0
# the environment of the tests: the real GPU backends, nothing forced or interpreted
unset TRITON_INTERPRET FASTLMK_BACKEND
export PYTHONUNBUFFERED=1

now() { date +%s; }
elapsed() { echo $(( $(now) - START )); }

# budget LEFT_FOR_LATER CAP: the timeout a step may use now
budget() {
  local left=$(( BUDGET - $(elapsed) - $1 ))
  [ "$left" -gt "$2" ] && left=$2
  echo "$left"
}

# record NAME STATUS SECONDS NOTE: one line of the summary (written as we go, so a killed run keeps it)
record() {
  printf '%-10s %-8s %5ss  %s\n' "$1" "$2" "$3" "$4" >> "$SUMMARY"
  printf '== %s: %s (%ss) %s\n' "$1" "$2" "$3" "$4"
  case "$2" in OK|SKIPPED|REFUSED) ;; *) OVERALL=1 ;; esac
}

# run_step NAME LOG LEFT_FOR_LATER CAP CMD...: runs CMD under timeout (signal $STEP_SIGNAL, default TERM,
# then KILL 10 s later), appends its output to LOG and records OK, FAIL (exit status), TIMEOUT or SKIPPED (no
# time left). Sets STEP_RC, STEP_STATUS, STEP_DT; with STEP_DEFER=1 the caller records the result itself.
run_step() {
  local name=$1 log=$2 later=$3 cap=$4
  shift 4
  local limit t0 rc msg
  limit=$(budget "$later" "$cap")
  if [ "$limit" -lt 15 ]; then
    echo "no time left for $name (budget ${BUDGET}s)" >> "$log"
    STEP_RC=124 STEP_STATUS=SKIPPED STEP_DT=0
    record "$name" SKIPPED 0 "no time left in the ${BUDGET}s budget"
    STEP_NOTE='' STEP_DEFER='' STEP_SIGNAL=''
    return
  fi
  t0=$(now)
  {
    echo "### $(date -u '+%F %T') UTC: $*"
    echo "### timeout ${limit}s (signal ${STEP_SIGNAL:-TERM})"
  } >> "$log"
  timeout -s "${STEP_SIGNAL:-TERM}" -k 10 "$limit" "$@" >> "$log" 2>&1
  rc=$?
  STEP_RC=$rc
  STEP_DT=$(( $(now) - t0 ))
  echo "### exit status $rc after ${STEP_DT}s" >> "$log"
  if [ "$rc" -eq 0 ]; then
    STEP_STATUS=OK msg="${STEP_NOTE:-}"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    STEP_STATUS=TIMEOUT msg="killed after ${limit}s; ${STEP_NOTE:-}"
  else
    STEP_STATUS=FAIL msg="exit status $rc; ${STEP_NOTE:-}"
  fi
  STEP_MSG=$msg
  [ -n "${STEP_DEFER:-}" ] || record "$name" "$STEP_STATUS" "$STEP_DT" "$msg"
  STEP_NOTE='' STEP_DEFER='' STEP_SIGNAL=''
}
STEP_RC=0 STEP_STATUS='' STEP_DT=0 STEP_MSG=''
STEP_NOTE='' STEP_DEFER='' STEP_SIGNAL=''

{
  echo "fastlmk GPU acceptance, $(date -u '+%F %T') UTC"
  if git -C "$REPO" rev-parse --git-dir > /dev/null 2>&1; then
    echo "repo      $REPO ($(git -C "$REPO" rev-parse --short HEAD)$(git -C "$REPO" diff --quiet HEAD -- 2>/dev/null || echo ', uncommitted changes'))"
  else
    echo "repo      $REPO (not a git checkout)"
  fi
  echo "host      $(hostname) ($NPROC CPUs)"
  GPU=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)
  echo "gpu       ${GPU:-none found (nvidia-smi missing or failed)}"
  echo "python    $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])' 2>&1))"
  echo "torch     $("$PY" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "available:", torch.cuda.is_available())' 2>&1 | tail -1)"
  echo "triton    $("$PY" -c 'import triton; print(triton.__version__)' 2>&1 | tail -1)"
  echo "nvcc      $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'not on PATH')"
  echo "budget    ${BUDGET}s"
  echo
  printf '%-10s %-8s %6s  %s\n' step status time note
} > "$SUMMARY"
cat "$SUMMARY"

# ---------------------------------------------------------------------------------------------- 1 build
BUILD_LOG="$OUT/build.log"
: > "$BUILD_LOG"
# the build requirements (pyproject.toml [build-system]) must already be here: --no-build-isolation, no index
MISSING=$("$PY" - 2>> "$BUILD_LOG" <<'EOF'
import importlib.util
import sys
missing = [m for m in ("pybind11", "setuptools", "torch") if importlib.util.find_spec(m) is None]
if "setuptools" not in missing:
    import setuptools
    v = tuple(int(x) for x in setuptools.__version__.split(".")[:2] if x.isdigit())
    if v < (64,):
        missing.append(f"setuptools>=64 (have {setuptools.__version__})")
    elif v < (70, 1) and importlib.util.find_spec("wheel") is None:
        missing.append("wheel (setuptools < 70.1 needs it)")
for m in ("pybind11", "setuptools", "torch"):
    if m not in missing:
        print(f"# {m} {getattr(__import__(m), '__version__', '?')}", file=sys.stderr)
print(" ".join(missing))
EOF
)
if ! command -v nvcc > /dev/null 2>&1 && [ ! -x "${CUDA_HOME:-/nonexistent}/bin/nvcc" ]; then
  MISSING="$MISSING nvcc"
fi
MISSING=${MISSING# }
if [ -n "$MISSING" ]; then
  {
    echo "CANNOT BUILD: missing: $MISSING (nothing can be downloaded here)."
    case " $MISSING " in *" pybind11 "*)
      echo "pybind11 is a build requirement of fastlmk (pyproject.toml [build-system]) and is NOT installed:"
      echo "bring its wheel and install it with: pip install --no-index --no-deps pybind11-*.whl" ;;
    esac
  } | tee -a "$BUILD_LOG"
  record build FAIL 0 "missing: $MISSING; the steps below use whatever fastlmk is already installed"
else
  # already installed editable from this checkout: rebuild in place (parallel, no reinstall); else install
  EDITABLE=$("$PY" - "$REPO" <<'EOF' 2>/dev/null
import os, sys
try:
    import fastlmk, fastlmk.kernels
    here = os.path.realpath(sys.argv[1])
    ok = all(os.path.realpath(m.__file__).startswith(here + os.sep) for m in (fastlmk, fastlmk.kernels))
    print("yes" if ok else "no")
except Exception:
    print("no")
EOF
)
  if [ "$EDITABLE" = "yes" ]; then
    STEP_NOTE="setup.py build_ext --inplace (already installed editable from $REPO)"
    run_step build "$BUILD_LOG" 300 180 env FASTLMK_CUDA=1 "$PY" setup.py build_ext --inplace -j "$NPROC"
  else
    STEP_NOTE="pip install --no-build-isolation --no-deps -e ."
    run_step build "$BUILD_LOG" 300 200 env FASTLMK_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps \
      --no-index -v -e .
  fi
fi
# what the tests will import
"$PY" - >> "$BUILD_LOG" 2>&1 <<'EOF'
import fastlmk, fastlmk.kernels
from fastlmk import _native
print("fastlmk from", fastlmk.__file__)
print("fastlmk._C:", "ok" if _native.cpu is not None else f"MISSING ({_native.cpu_error})")
print("fastlmk._cuda:", "ok, %d device(s), runtime %s" % (_native.cuda.device_count(), _native.cuda.runtime_version())
      if _native.cuda is not None else f"MISSING ({_native.cuda_error})")
EOF
grep -E '^fastlmk\._(C|cuda):' "$BUILD_LOG" | sed 's/^/   /'

# ---------------------------------------------------------------------------------------------- 2 tests
PYTEST_LOG="$OUT/pytest.log"
: > "$PYTEST_LOG"
# the `test` extra (pyproject.toml): what is missing here makes its tests error at collection (carried on)
TEST_MISSING=$("$PY" -c 'import importlib.util as u
print(" ".join(m for m in ("pytest", "hypothesis", "scipy", "pytest_benchmark", "triton") if u.find_spec(m) is None))' \
  2>/dev/null)
[ -n "$TEST_MISSING" ] && echo "missing test dependencies: $TEST_MISSING" | tee -a "$PYTEST_LOG"
STEP_NOTE="junit: $OUT/junit.xml${TEST_MISSING:+; missing test deps: $TEST_MISSING}"
STEP_SIGNAL=INT  # on timeout pytest stops as on ^C and still writes the junit of what ran
# shellcheck disable=SC2086  # FASTLMK_ACCEPT_PYTEST_ARGS is a list of words
run_step tests "$PYTEST_LOG" 170 260 "$PY" -m pytest tests -p no:cacheprovider -ra --durations=25 \
  --continue-on-collection-errors \
  --junitxml="$OUT/junit.xml" -o junit_family=xunit2 ${FASTLMK_ACCEPT_PYTEST_ARGS:-}
# counts and skip reasons from the junit (a gpu test skipped here is a gap: say so)
if [ -f "$OUT/junit.xml" ]; then
  "$PY" - "$OUT/junit.xml" <<'EOF' | tee -a "$SUMMARY" "$PYTEST_LOG"
import collections, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
tot = collections.Counter()
for s in suites:
    for k in ("tests", "failures", "errors", "skipped"):
        tot[k] += int(s.get(k, 0))
print(f"           junit: {tot['tests']} tests, {tot['failures']} failures, {tot['errors']} errors, "
      f"{tot['skipped']} skipped")
reasons = collections.Counter()
for case in root.iter("testcase"):
    for sk in case.findall("skipped"):
        reasons[(sk.get("message") or "").split("\n")[0][:110]] += 1
for msg, n in reasons.most_common(8):
    flag = "  <-- GPU test skipped on the GPU machine" if "GPU" in msg or "cuda" in msg.lower() else ""
    print(f"           skipped x{n}: {msg}{flag}")
EOF
fi

# ------------------------------------------------------------------------------------------- 3 sanitize
SAN=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer 2>/dev/null || true)}
for cand in "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" /usr/local/cuda/bin/compute-sanitizer \
            /usr/local/cuda/compute-sanitizer/compute-sanitizer /usr/local/cuda-*/bin/compute-sanitizer; do
  [ -z "$SAN" ] && [ -x "$cand" ] && SAN=$cand
done
for tool in memcheck racecheck; do
  log="$OUT/sanitize_$tool.log"
  : > "$log"
  if [ -z "$SAN" ]; then
    echo "compute-sanitizer not found (PATH, \$COMPUTE_SANITIZER, \$CUDA_HOME/bin, /usr/local/cuda*): $tool not run" \
      | tee -a "$log"
    record "$tool" SKIPPED 0 "compute-sanitizer not installed; carried on without it"
    continue
  fi
  [ "$tool" = memcheck ] && later=110 || later=55
  # no caching allocator: every tensor is its own allocation, so memcheck sees an overrun past a tensor
  STEP_NOTE="$("$SAN" --version 2>/dev/null | grep -io 'version.*' | head -1)"
  STEP_DEFER=1
  run_step "$tool" "$log" "$later" 110 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    "$SAN" --tool "$tool" --error-exitcode 86 --print-limit 200 \
    "$PY" benchmarks/gpu_sanitize_cases.py all --device cuda
  [ "$STEP_STATUS" = SKIPPED ] && continue
  cases_ok=$(grep -c '^CASE .* ok' "$log" || true)
  cases_bad=$(grep '^CASE .* FAILED' "$log" | awk '{print $2}' | tr '\n' ' ')
  reports=$(grep -cE '^========= +(Invalid|Race|Error|Warning|.*[Hh]azard|Program hit|Uninitialized)' "$log" || true)
  started=$(grep -cE '^(device |CASE )' "$log" || true)
  detail="$cases_ok cases ok; failed: ${cases_bad:-none}; sanitizer report lines: $reports; $(basename "$log")"
  if [ "$STEP_STATUS" = FAIL ] && [ "$started" -eq 0 ] && grep -q '^=========' "$log"; then
    # the sanitizer never got the script going (permissions, driver, unsupported GPU): say so, carry on
    record "$tool" REFUSED "$STEP_DT" "compute-sanitizer exited $STEP_RC before the cases started; carried on; $(basename "$log")"
  elif [ "$STEP_STATUS" = FAIL ] && [ "$STEP_RC" -eq 86 ]; then
    record "$tool" FAIL "$STEP_DT" "errors reported; $detail"
  else
    record "$tool" "$STEP_STATUS" "$STEP_DT" "${STEP_MSG:+$STEP_MSG; }$detail"
  fi
done

# ---------------------------------------------------------------------------------------------- 4 bench
BENCH_LOG="$OUT/bench.log"
: > "$BENCH_LOG"
if [ "${FASTLMK_ACCEPT_FULL_BENCH:-0}" = 1 ]; then QUICK=(); STEP_NOTE="full bench"; else QUICK=(--quick); STEP_NOTE="--quick"; fi
if command -v fastlmk > /dev/null 2>&1; then
  BENCH=(fastlmk)
else
  BENCH=("$PY" -c 'import sys; from fastlmk.cli import main; sys.exit(main())')
fi
STEP_NOTE="$STEP_NOTE; $OUT/bench.md"
run_step bench "$BENCH_LOG" 3 200 "${BENCH[@]}" bench --device cuda ${QUICK[@]+"${QUICK[@]}"} --markdown "$OUT/bench.md"

# -------------------------------------------------------------------------------------------- 5 summary
{
  echo
  echo "total ${BUDGET}s budget, $(elapsed)s used; overall: $([ "$OVERALL" -eq 0 ] && echo PASS || echo FAIL)"
  echo "logs: $OUT"
} >> "$SUMMARY"
echo
cat "$SUMMARY"
exit "$OVERALL"
