#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine for RNN-RBM Studio: system packages (Qt's X libraries,
# JACK and FluidSynth for the live tests), then a virtual environment in .venv with the app and its
# test tools. Safe to run again: it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# libfluidsynth3 and a General MIDI SoundFont: the built-in synth (docs/synth.md)
apt_packages=(jackd2 fluidsynth libfluidsynth3 timgm6mb-soundfont xvfb xauth libxcb-icccm4 libxcb-keysyms1
              libxcb-cursor0 libxkbcommon-x11-0
              libxcb-shape0 libxcb-render-util0 libxcb-image0 libxcb-randr0 libxcb-xinerama0 libegl1 libgl1
              libopengl0 libfontconfig1 libdbus-1-3 libglib2.0-0 fonts-dejavu-core)

source scripts/apt_wait.sh

missing=()
for package in "${apt_packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ] && command -v "${APT_GET}" >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  apt_get_waiting_for_lock update -qq
  apt_get_waiting_for_lock install -y -qq --no-install-recommends "${missing[@]}"
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 'setuptools>=77' wheel >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'
echo "ready: .venv/bin/rnnrbm-studio"
