"""``python -m mitosis``: the same as the ``mitosis`` command."""

from .cli import main

main(prog_name="mitosis")
