"""Experiment definitions, one module per paper; importing this package registers them all."""

from experiments import (  # noqa: F401  (registration side effect)
    control,
    deepseekmoe,
    expert_choice,
    finedeep,
    mone,
    shazeer,
    stmoe,
    switch,
)
