"""``python -m socket_gateway``."""

from socket_gateway.main import main

main()
