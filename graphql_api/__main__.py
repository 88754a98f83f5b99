"""``python -m graphql_api``."""

from graphql_api.main import main

main()
