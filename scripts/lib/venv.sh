# shellcheck shell=bash
# ensure_venv DIR SPEC: a virtualenv at DIR with modelform installed editable
# from this checkout with SPEC's extras; quick when it is already there.
ensure_venv() {
  local venv=$1 spec=$2
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
  fi
  local stamp
  stamp="$venv/.modelform-$(echo "$spec" | md5sum | cut -c1-8)"
  local want
  want="$spec $(sha256sum pyproject.toml | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/pip" install -q -e "$spec"
    echo "$want" > "$stamp"
  fi
}
