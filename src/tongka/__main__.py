"""`python -m tongka`: the `tongka` command (how `tongka serve` starts its Nchf listener)."""

from tongka.cli import app

app(prog_name="tongka")
