#!/usr/bin/env bash
# Fill .device-wheels/ (git-ignored; carry it to the device) with the wheels the device image
# lacks for `repro run` (mlflow's tracking store, optuna, datasets), for its Python 3.12 x86_64.
# Run here, where the package registry is reachable. Check the total stays under the device
# tool's 64 MiB carry limit (du -sh .device-wheels).
set -eu
python3 -m pip download --dest .device-wheels --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
  mlflow-skinny sqlalchemy alembic optuna optuna-integration datasets
du -sh .device-wheels
