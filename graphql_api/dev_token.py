"""``python -m graphql_api.dev_token``: prints a bearer token for development, signed with GRAPHQL_JWT_SECRET.

Production tokens come from the auction platform's identity service; this exists so that the
one-command start can hand a developer an admin token for GraphiQL and curl.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from graphql_api.auth import Role, issue_token
from graphql_api.config import read_jwt_secret
from service_common.config import ConfigError


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m graphql_api.dev_token", description=__doc__)
    parser.add_argument("--role", choices=[role.value for role in Role], default=Role.ADMIN.value)
    parser.add_argument("--sub", default="dev-admin", help="the token's subject (default: dev-admin)")
    parser.add_argument(
        "--auctions", default="", help="comma-separated auction ids a seller may see (ignored for admins)"
    )
    parser.add_argument("--hours", type=float, default=12.0, help="lifetime in hours (default: 12)")
    arguments = parser.parse_args(argv)
    try:
        secret = read_jwt_secret(os.environ)
    except ConfigError as error:
        print(f"dev_token: {error}", file=sys.stderr)
        sys.exit(2)
    if not 0 < arguments.hours <= 24 * 30:
        parser.error("--hours must be between 0 and 720")
    auctions = [auction.strip() for auction in arguments.auctions.split(",") if auction.strip()]
    print(
        issue_token(
            secret,
            subject=arguments.sub,
            role=Role(arguments.role),
            auctions=auctions,
            now=time.time(),
            lifetime_seconds=arguments.hours * 3600,
        )
    )


if __name__ == "__main__":
    main()
