# Sourced by scripts/install and scripts/test: which Pythons from 3.10 to 3.13 this machine has.
#   SUPPORTED_PYTHONS   the versions Trestle supports
#   python_version PY   "3.11" for an interpreter, empty if it does not run
#   find_python 3.12    the newest working 3.12 interpreter: pyenv's (~/.pyenv/versions/3.12.*), then PATH
#   venv_for 3.12       .venv-py312 (the default interpreter's version uses .venv)
SUPPORTED_PYTHONS="3.10 3.11 3.12 3.13"

python_version() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || true
}

find_python() {
  local want=$1 candidate
  for candidate in $(ls -d "$HOME"/.pyenv/versions/"$want".*/bin/python 2>/dev/null | sort -rV) \
                   "$(command -v "python$want" 2>/dev/null || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ] && [ "$(python_version "$candidate")" = "$want" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

venv_for() {
  echo ".venv-py${1/./}"
}
