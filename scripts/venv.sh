# Sourced by scripts/up and scripts/test: make (once) and use the project's own environment,
# .venv, so that installing dayfly never changes the machine's Python (PEP 668 forbids it on
# Debian's, and on pyenv's it would upgrade what other projects use). PYTHON picks the
# interpreter that makes it (default: python3; any Python >= 3.11).
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "dayfly needs Python 3.11 or newer; '$py' is $("$py" --version 2>&1 || echo missing)." >&2
    echo "Run again with PYTHON=/path/to/python3.11 (or newer)." >&2
    exit 1
  fi
  if ! "$py" -m venv .venv >/dev/null 2>&1; then
    rm -rf .venv
    # Debian and Ubuntu ship venv's pip bootstrap as a package of its own
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
      ver=$("$py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$ver-venv" >/dev/null
      "$py" -m venv .venv
    else
      echo "'$py -m venv' failed: install your distribution's venv package" >&2
      echo "(Debian/Ubuntu: sudo apt-get install python3-venv), then run this again." >&2
      exit 1
    fi
  fi
  .venv/bin/python -m pip install --disable-pip-version-check -q --upgrade pip
fi
export VIRTUAL_ENV="$PWD/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
