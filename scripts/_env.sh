# Sourced by scripts/demo and scripts/test: create .venv and install birdbridge into it.
# Torch: an existing torch in the venv is kept. Otherwise torch==2.13.0 (CPU) is installed;
# on machines whose pip has no local CPU wheel, set BIRDBRIDGE_TORCH to any pip requirement,
# e.g. BIRDBRIDGE_TORCH="torch --index-url https://download.pytorch.org/whl/cpu".
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${BIRDBRIDGE_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086
  "${PIP[@]}" install ${BIRDBRIDGE_TORCH:-torch==2.13.0}
fi
if [ "$1" = "test" ] && [ ! -x /usr/bin/chromium ]; then
  # The browser test drives Debian's chromium through Playwright (browser downloads do not work here).
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: install Debian's chromium (/usr/bin/chromium) for the browser test" >&2
  fi
fi
stamp="$VENV/.birdbridge-install-$1"
want="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/_env.sh" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  if [ "$1" = "test" ]; then
    "${PIP[@]}" install -e "$ROOT[dev,faiss,geo,hoplite,onnx,ray]"
    # open_clip is only the tests' independent reference for the teacher conversion. Its
    # torchvision dependency does not work beside the CPU torch, so install it without
    # dependencies; the tests import its model code without torchvision.
    "${PIP[@]}" install --no-deps "open_clip_torch==3.3.0"
  else
    "${PIP[@]}" install -e "$ROOT"
  fi
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
export HF_HUB_DISABLE_TELEMETRY=1
