#!/bin/sh
# Generates ./configure from configure.ac (a git checkout has none).
set -e
cd "$(dirname "$0")"
autoreconf --install --force
