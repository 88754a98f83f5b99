"""``python -m local_stack``."""

from local_stack.main import main

main()
