#!/usr/bin/env bash
# kijun set-up step, run by `make setup` (and so by both README commands). Idempotent: a second
# run finds everything in place and takes seconds.
#   1. Debian packages the lab and the tests need (podman, runc, debootstrap, ...)
#   2. .venv with kijun and its pinned dependencies (pyproject.toml + requirements.lock)
#   3. `kijun setup`: kijun's own containers.conf (CONTAINERS_CONF) and the cached lab image
set -euo pipefail
cd "$(dirname "$0")/../../.."
root=$(pwd)

say() { printf '\033[36m•\033[0m %s\n' "$*"; }
fail() { printf 'kijun setup: %s\n' "$*" >&2; exit 1; }

APT_PACKAGES=(
  podman runc netavark aardvark-dns iptables uidmap slirp4netns   # the lab's container engine
  debootstrap                                            # builds the lab image
  openssh-client                                         # the control node's SSH
  logrotate                                              # tests check the files roles leave
  git tar iproute2 ca-certificates
  chromium fonts-noto-cjk                                # renders and checks report.html
)
# A site may need more (e.g. a mirror's keyring): KIJUN_EXTRA_APT_PACKAGES="pkg1 pkg2".
read -r -a extra <<< "${KIJUN_EXTRA_APT_PACKAGES:-}"
APT_PACKAGES+=("${extra[@]}")

# --- 1. Debian packages ----------------------------------------------------------------------
command -v dpkg-query >/dev/null || fail "this set-up expects Debian 12 (dpkg/apt); install the packages ${APT_PACKAGES[*]} by hand"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]]; then
    say "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed: check the machine's access to Debian's package mirror"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || fail "apt-get install ${missing[*]} failed (see the messages above)"
  elif sudo -n true 2>/dev/null; then
    say "installing Debian packages with sudo: ${missing[*]}"
    sudo DEBIAN_FRONTEND=noninteractive apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    fail "missing Debian packages: ${missing[*]}
  kijun's lab needs them and this user cannot install them. Run as root:
    sudo apt-get install -y ${missing[*]}
  then run this command again."
  fi
fi

# --- 2. the virtual environment --------------------------------------------------------------
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || fail "python3 not found: install Python 3.11 or newer (apt-get install python3 python3-venv)"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || fail "kijun needs Python >= 3.11; $("$PY" --version) found. Set PYTHON=/path/to/python3.11"
stamp=.venv/.kijun-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv"
  "$PY" -m venv .venv || fail "python -m venv failed: install python3-venv (apt-get install python3-venv)"
fi
if [[ ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  say "installing kijun and its pinned dependencies into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -c requirements.lock -e ".[dev]" \
    || fail "pip install failed (see above); check access to PyPI"
  echo "$want" > "$stamp"
fi

# --- 3. containers.conf and the lab image ----------------------------------------------------
.venv/bin/kijun setup
say "set-up complete in $root"
