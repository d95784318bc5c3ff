"""The test suite. Its folders mirror ``repro/`` (tests/routers/ tests repro/routers/, ...);
tests of top-level modules (cli, config, compute, registry, paths, pool, dist, references,
reliability) sit here. Every folder is a package, so test files import the shared helpers as
``tests._store``, ``tests._moe_factories``, ``tests._forkcli`` and ``tests._probe_router`` from any
folder, under ``python -m pytest`` and plain ``pytest`` alike (pytest puts the repository root on
sys.path)."""
