"""The CLI starts fast: importing it and parsing any command line loads no heavy library
(torch, Lightning, MLflow, Optuna, datasets, matplotlib, scipy); those load inside commands."""

import subprocess
import sys

HEAVY = ("torch", "lightning", "mlflow", "optuna", "datasets", "matplotlib", "scipy",
         "torchmetrics", "pandas")


def test_cli_import_and_parse_load_no_heavy_library():
    code = (
        "import sys\n"
        "import repro.cli as c\n"
        "p = c.build_parser()\n"
        "for argv in (['run', 'switch-vs-dense', '--seeds', '0,1'], ['show', 'x'], ['ls'],\n"
        "             ['check', 'all'], ['sweep', 'x', '--arm', 'a', '--trials', '3'],\n"
        "             ['bench', '--quick'], ['report'], ['ui'], ['doctor']):\n"
        "    p.parse_args(argv)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "", f"loaded at parse time: {out}"
