#!/bin/sh
# Builds the Python timer component: guest-python/target/timer_python.wasm
#
#   ./build.sh            (from guest-python/, or from anywhere: it cds here)
#
# Creates .venv/ with the pinned tools on first use (needs PyPI then), then runs
# componentize-py. Set PYTHON to choose the interpreter that creates the venv (3.10+).
set -eu
cd "$(dirname "$0")"
if [ ! -x .venv/bin/python ]; then
    "${PYTHON:-python3}" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
mkdir -p target
# componentize-py imports app.py once, from this directory (app.py, timerlogic/) and the
# venv's site-packages (tzdata), and snapshots the initialized interpreter into the component.
SITE=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
.venv/bin/componentize-py -d ../wit -w timer-component componentize app \
    -p . -p "$SITE" -o target/timer_python.wasm
ls -l target/timer_python.wasm
