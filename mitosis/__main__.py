"""``python -m mitosis``: the same as the ``mitosis`` command."""

from .cli.main import main

main(prog_name="mitosis")
