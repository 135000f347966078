#!/usr/bin/env bash
# Set up diffkd_mm's environment: a project-local virtual environment with torch, torchvision,
# mmengine, mmcv (compiled ops), mmdet, mmsegmentation, mmpretrain, mmrazor, openmim and this project
# (editable). Idempotent: a second run checks, reuses and finishes in well under two minutes.
#
#   bash tools/setup_env.sh                          # default stack (torch 2.14.1) in ./.venv
#   DIFFKD_STACK=torch2.1 bash tools/setup_env.sh    # torch 2.1.2 stack in ./.venv-torch2.1
#
# Each stack is a torch pin file (requirements/torch.txt, requirements/torch2.1.txt) and its own
# virtual environment (override the location with DIFFKD_VENV=/path). Everything else (mmcv 2.1.0,
# mmengine, mmdet, mmseg, mmpretrain, mmrazor) is the same on both. torch2.1 is the stack OpenMMLab's
# install guide gives GPU clusters (prebuilt mmcv 2.1.0 wheels exist for torch 2.0/2.1 only).
#
# The slow part is mmcv 2.1.0: PyPI ships only its sdist, and its 77 compile units take ~20 minutes on
# two cores. The built wheel is kept in a wheelhouse under the user's cache directory, keyed by the
# mmcv, torch and C++ ABI it was built for, so any clone on the same machine reuses it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK="${DIFFKD_STACK:-default}"
case "$STACK" in
  default)  TORCH_REQ="$ROOT/requirements/torch.txt";    VENV="${DIFFKD_VENV:-$ROOT/.venv}" ;;
  torch2.1) TORCH_REQ="$ROOT/requirements/torch2.1.txt"; VENV="${DIFFKD_VENV:-$ROOT/.venv-torch2.1}" ;;
  *) echo "[setup] ERROR: unknown DIFFKD_STACK='$STACK' (known: default, torch2.1)" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-python3}"
MMCV_VERSION=2.1.0
CACHE_DIR="${DIFFKD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/diffkd_mm}"
T0=$SECONDS
phase_start=$SECONDS

phase() {  # phase NAME: print how long the previous phase took, then announce the next one
  local now=$SECONDS
  [ -n "${PHASE:-}" ] && printf '[setup] %-28s done in %4ds\n' "$PHASE" $((now - phase_start))
  PHASE="$1"; phase_start=$now
  [ -n "$1" ] && echo "[setup] >>> $1"
  return 0
}

phase "virtual environment"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)
echo "[setup] stack: $STACK ($(grep -E '^torch' "$TORCH_REQ" | tr '\n' ' '))"
echo "[setup] python: $("$PY" --version) at $VENV"

phase "build tools + torch"
if ! "$PY" -c 'import torch' 2>/dev/null; then
  # torch is the bulk of a stack: its CUDA build and the nvidia-* wheels it pulls take ~6 GiB in
  # the environment, plus the downloads while pip installs them. A full disk mid-install leaves a
  # broken environment and an OSError; say it before starting instead.
  need_gib="${DIFFKD_MIN_FREE_GIB:-$([ "$STACK" = torch2.1 ] && echo 9 || echo 7)}"
  for dir in "$VENV" "${TMPDIR:-/tmp}"; do
    free_gib=$(df -Pk "$dir" | awk 'NR == 2 {printf "%.1f", $4 / 1048576}')
    if awk -v f="$free_gib" -v n="$need_gib" 'BEGIN {exit !(f < n)}'; then
      echo "[setup] ERROR: installing torch for the '$STACK' stack needs about $need_gib GiB free;" \
        "the disk holding $dir has $free_gib GiB. Free some space, or put the environment and" \
        "pip's downloads on a larger disk (DIFFKD_VENV=/path, TMPDIR=/path);" \
        "DIFFKD_MIN_FREE_GIB=N changes the threshold." >&2
      exit 1
    fi
  done
fi
# --no-cache-dir: a copy of the torch wheels in pip's cache would double their footprint on disk.
# A second run installs nothing (pip's default --upgrade-strategy is only-if-needed).
"${PIP[@]}" install -q --no-cache-dir -r "$ROOT/requirements/build.txt" -r "$TORCH_REQ"

TORCH_VERSION=$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')
TORCH_ABI=$("$PY" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
PY_TAG=$("$PY" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
WHEELHOUSE="$CACHE_DIR/wheelhouse/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-cxx11abi$TORCH_ABI-$PY_TAG"
mkdir -p "$WHEELHOUSE"
# torch >= 2.14's headers refuse anything below C++20; older torch (2.1 included) builds with the
# C++17 that mmcv 2.1.0's setup.py asks for, so only the newer torch gets the compiler wrapper.
NEEDS_CXX20=$("$PY" -c 'import torch; v = torch.__version__.split("+")[0].split("."); print(int((int(v[0]), int(v[1])) >= (2, 14)))')

phase "mmcv $MMCV_VERSION (compiled ops)"
if "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; then
  echo "[setup] mmcv $MMCV_VERSION with ops already installed"
else
  # A cached wheel that is not a sound zip (cut short by a kill or a full disk), or whose compiled
  # ops do not load against this torch (built against another one), is set aside, renamed, and
  # built again: the cache is ours to heal.
  for wheel in "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl; do
    [ -e "$wheel" ] || continue
    if ! problem=$("$PY" - "$wheel" 2>&1 <<'CHECK'
import importlib.util, sys, tempfile, zipfile
import torch  # noqa: F401  (the ops link against this torch's libraries)
with zipfile.ZipFile(sys.argv[1]) as wheel, tempfile.TemporaryDirectory() as tmp:
    if wheel.testzip() is not None:
        sys.exit('a damaged file in the zip')
    ext = [n for n in wheel.namelist() if n.startswith('mmcv/_ext') and n.endswith('.so')]
    if not ext:
        sys.exit('no compiled ops (mmcv/_ext*.so)')
    spec = importlib.util.spec_from_file_location('mmcv._ext', wheel.extract(ext[0], tmp))
    importlib.util.module_from_spec(spec)  # loads it: a symbol of another torch fails here
CHECK
    ); then
      aside="$wheel.bad-$(date +%Y%m%d-%H%M%S)"
      mv "$wheel" "$aside"
      echo "[setup] WARNING: cached wheel $wheel is unusable ($(echo "$problem" | tail -n 1 | cut -c1-160)): set aside as $(basename "$aside"), building it again"
    fi
  done
  if ! ls "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    echo "[setup] no cached wheel in $WHEELHOUSE: compiling mmcv $MMCV_VERSION (~10-20 min on 2 cores)"
    WRAP_DIR="$(mktemp -d)"
    if [ "$NEEDS_CXX20" = 1 ]; then
      # mmcv 2.1.0's setup.py appends -std=c++14/17 after any CXXFLAGS. A compiler wrapper that
      # rewrites the flag is the least invasive fix.
      echo "[setup] torch $TORCH_VERSION needs C++20: compiling through a -std=c++20 wrapper"
      cat > "$WRAP_DIR/cxx" <<'WRAP'
#!/usr/bin/env bash
args=()
for a in "$@"; do
  case "$a" in -std=c++14|-std=c++17) args+=("-std=c++20") ;; *) args+=("$a") ;; esac
done
exec c++ "${args[@]}"
WRAP
      chmod +x "$WRAP_DIR/cxx"
      BUILD_CXX="$WRAP_DIR/cxx"
    else
      echo "[setup] torch $TORCH_VERSION: compiling with mmcv's own -std=c++17"
      BUILD_CXX="${CXX:-c++}"
    fi
    BUILD_LOG="$CACHE_DIR/mmcv-build-torch$TORCH_VERSION.log"
    echo "[setup] full build log: $BUILD_LOG"
    # Progress: ninja prints "[k/77] ..." for each compile unit; show those lines only.
    # Built into a scratch folder, then renamed into the wheelhouse: an interrupted build never
    # leaves a partial wheel where the next run would take it.
    BUILD_OUT="$(mktemp -d "$WHEELHOUSE/.build-XXXXXX")"
    set +e
    # --no-cache-dir: pip's own wheel cache is keyed by the sdist alone and would hand back a
    # wheel built against another torch.
    CXX="$BUILD_CXX" MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
      "${PIP[@]}" wheel -v --no-cache-dir --no-build-isolation --no-deps "mmcv==$MMCV_VERSION" -w "$BUILD_OUT" \
      2>&1 | tee "$BUILD_LOG" | grep --line-buffered -oE '^\s*\[[0-9]+/[0-9]+\]' | sed -u 's/^ */[setup]   mmcv compile /'
    status=${PIPESTATUS[0]}
    set -e
    rm -rf "$WRAP_DIR"
    if [ "$status" -eq 0 ]; then
      mv "$BUILD_OUT"/mmcv-"$MMCV_VERSION"-*.whl "$WHEELHOUSE"/
    fi
    rm -rf "$BUILD_OUT"
    if [ "$status" -ne 0 ]; then
      echo "[setup] ERROR: mmcv build failed (exit $status); last lines of $BUILD_LOG:" >&2
      tail -n 30 "$BUILD_LOG" >&2
      exit "$status"
    fi
  else
    echo "[setup] reusing cached wheel from $WHEELHOUSE"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEELHOUSE"/mmcv-"$MMCV_VERSION"-*.whl
fi

phase "OpenMMLab stack + project"
# mmcv's own dependencies (addict, yapf, ...) come in here too: the wheel was installed with --no-deps.
"${PIP[@]}" install -q -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/mminstall.txt" \
  -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/build.txt" -r "$TORCH_REQ"
"${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"

phase "import check"
"$PY" - <<'CHECK'
import diffkd_mm, mmrazor.models, mmdet.models, mmseg.models, mmpretrain.models  # noqa: F401
from mmcv.ops import nms, RoIAlign  # noqa: F401
import mmcv, mmdet, mmseg, mmpretrain, mmrazor, mmengine, torch, torchvision, numpy
print('[setup] versions: ' + ', '.join(f'{m.__name__} {m.__version__}' for m in (
    torch, torchvision, mmengine, mmcv, mmdet, mmseg, mmpretrain, mmrazor, numpy, diffkd_mm)))
CHECK
phase ""
echo "[setup] environment ready in $((SECONDS - T0))s: activate with 'source ${VENV#$ROOT/}/bin/activate'"
