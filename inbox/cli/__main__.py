"""`python -m inbox.cli …` is the `inbox` console script (`inbox run` starts its worker this way)."""

from . import main

main()
