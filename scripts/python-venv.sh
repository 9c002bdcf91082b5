#!/usr/bin/env bash
# Create (idempotently) the Python venvs used by tests/fakehub_conformance.rs to check the fake
# Hugging Face Hub with the official client. Prints the venv's python path on stdout.
#
#   scripts/python-venv.sh          -> venv with huggingface_hub==2.4.0 and hf_xet (xet path)
#   scripts/python-venv.sh --no-xet -> venv with huggingface_hub==2.4.0 only (legacy LFS path)
#
# The venvs live in $HOME/.cache/openclaw-space/ and are reused when the pinned versions are
# already installed, so a second run costs well under a second.
set -euo pipefail

HUB_VERSION="2.4.0"
variant="xet"
if [[ "${1:-}" == "--no-xet" ]]; then variant="noxet"; fi

cache="${HOME}/.cache/openclaw-space"
venv="${cache}/venv-hf"
[[ "$variant" == "noxet" ]] && venv="${cache}/venv-hf-noxet"
py="${venv}/bin/python"
stamp="${venv}/.openclaw-space-ok-${HUB_VERSION}"

if [[ -x "$py" && -f "$stamp" ]]; then
  echo "$py"
  exit 0
fi

python="$(command -v python3 || true)"
if [[ -z "$python" ]]; then
  echo "python-venv.sh: python3 not found; install python3 (with the venv module) and retry" >&2
  exit 1
fi
mkdir -p "$cache"
"$python" -m venv "$venv" >&2 || {
  echo "python-venv.sh: '$python -m venv $venv' failed; install python3-venv and retry" >&2
  exit 1
}
pkgs=("huggingface_hub==${HUB_VERSION}")
if [[ "$variant" == "xet" ]]; then pkgs+=("hf_xet"); fi
if ! "$py" -m pip install --disable-pip-version-check -q "${pkgs[@]}" >&2; then
  echo "python-venv.sh: pip could not install ${pkgs[*]} (is PyPI reachable?); the conformance check needs them" >&2
  exit 1
fi
if [[ "$variant" == "noxet" ]] && "$py" -c 'import hf_xet' 2>/dev/null; then
  # huggingface_hub may pull hf_xet in as a dependency; the no-xet venv must not have it.
  "$py" -m pip uninstall -y -q hf_xet >&2
fi
touch "$stamp"
echo "$py"
