"""``python -m oms.cli``: the ``oms`` command without its script."""

from . import main

main(prog_name="oms")
