"""``python -m simulate``."""

from simulate.main import main

main()
