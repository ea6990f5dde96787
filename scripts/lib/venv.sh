# shellcheck shell=bash
# ensure_venv DIR SPEC: a virtualenv at DIR with modelform installed from this
# checkout with SPEC's extras; quick when it is already there.
#
# The install is a *strict* editable one: instead of an import hook that only
# Python runs, the venv's path gets a folder of links laid out as the import
# names (build/__editable__.modelform-*/modelform/engine/planner.py → engine/
# planner.py), so editors, type checkers and code browsers that read files as
# files resolve every import too. setuptools links file by file; the
# subpackage folders are then made links to their folders, so a module added
# to engine/, providers/, … is importable at once. Only a file added to
# modelform/ itself needs this to run again: the stamp holds that folder's
# listing (and pyproject.toml's digest), so the scripts reinstall when it
# changes — and once when a venv was made the old, hook-only way.
# See docs/contributing.md.
ensure_venv() {
  local venv=$1 spec=$2
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
  fi
  local stamp want
  stamp="$venv/.modelform-$(echo "$spec" | md5sum | cut -c1-8)"
  want="$spec strict $(sha256sum pyproject.toml | cut -c1-16) $(_modelform_listing | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! _modelform_tree_ok "$venv"; then
    # pip passes on setuptools' notes about strict mode even with -q: keep
    # the output for a failure only.
    if ! "$venv/bin/pip" install -q -e "$spec" --config-settings editable_mode=strict \
      >"$venv/.install-modelform.log" 2>&1; then
      cat "$venv/.install-modelform.log" >&2
      return 1
    fi
    _modelform_link_folders "$venv"
    _modelform_tree_ok "$venv" || { echo "ensure_venv: no link tree after install" >&2; return 1; }
    echo "$want" > "$stamp"
  fi
}

# The files setuptools links one by one: those directly in modelform/.
_modelform_listing() {
  find modelform -maxdepth 1 -type f ! -name '*.pyc' | LC_ALL=C sort
}

# modelform_tree VENV: the link tree a strict editable install put on VENV's
# path (the folder holding modelform/), from the .pth file that names it.
modelform_tree() {
  local pth
  for pth in "$1"/lib/python3*/site-packages/__editable__.modelform-*.pth; do
    [ -f "$pth" ] && grep -v '^import ' "$pth" | head -n 1
    return
  done
}

_modelform_tree_ok() {
  local tree
  tree=$(modelform_tree "$1")
  [ -n "$tree" ] && [ -f "$tree/modelform/__init__.py" ] && [ -L "$tree/modelform/engine" ]
}

# Each subpackage folder of the tree (files linked one by one) becomes one
# link to the folder its files come from: engine/, providers/, …
_modelform_link_folders() {
  local tree d src
  tree=$(modelform_tree "$1")
  [ -n "$tree" ] || return 1
  for d in "$tree"/modelform/*/; do
    d=${d%/}
    [ -L "$d" ] || [ ! -e "$d/__init__.py" ] && continue
    src=$(dirname "$(readlink -f "$d/__init__.py")")
    rm -rf "$d"
    ln -s "$src" "$d"
  done
}
