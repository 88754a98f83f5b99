"""The ``simulate`` command: arguments, a progress line, Ctrl-C, and a summary at the end."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import TextIO

from simulate.simulation import TRANSPORT_LOGGER, Progress, Simulation, SimulationConfig

DESCRIPTION = """\
Brings N simulated viewers (real Socket.IO clients) to M auctions on a running socket gateway, with
join/leave churn, for T seconds, and prints a progress line: connections, joins and leaves, and for
the busiest rooms the count the gateway broadcasts next to the count the simulation expects
(gateway/simulated; a dashboard tab open on the same auction adds one to the gateway's side).

Auctions are named <prefix>1 ... <prefix>M ("auction-1" is the dashboard's default). Turn analytics on
for an auction in the dashboard to have its minutes stored.

Start the system first (scripts/start), then for example:
  .venv/bin/python -m simulate --viewers 200 --auctions 3 --seconds 120
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def parse_arguments(argv: Sequence[str] | None) -> tuple[SimulationConfig, float, bool]:
    """The simulation's configuration, the progress interval and ``--verbose``, from the command line."""
    parser = argparse.ArgumentParser(
        prog="python -m simulate",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--gateway", default="http://127.0.0.1:8081", help="socket gateway URL (default: %(default)s)"
    )
    parser.add_argument(
        "--viewers", type=_positive_int, default=20, help="N: connections (default: %(default)s)"
    )
    parser.add_argument(
        "--auctions", type=_positive_int, default=2, help="M: auction rooms (default: %(default)s)"
    )
    parser.add_argument(
        "--seconds", type=_non_negative_float, default=60.0, help="T: how long to run (default: %(default)s)"
    )
    parser.add_argument(
        "--churn",
        type=_non_negative_float,
        default=6.0,
        help="leaves per viewer per minute, on average; each leaver rejoins a random auction "
        "after 0.2-2 s (0: no churn; default: %(default)s)",
    )
    parser.add_argument(
        "--tabs",
        type=_positive_int,
        default=1,
        help="connections per viewer id, to see unique viewers below connections (default: %(default)s)",
    )
    parser.add_argument("--prefix", default="auction-", help="auction id prefix (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also log each viewer's reconnections and python-socketio's and python-engineio's own lines",
    )
    parser.add_argument(
        "--every",
        type=_non_negative_float,
        default=1.0,
        help="seconds between progress lines (default: %(default)s)",
    )
    arguments = parser.parse_args(argv)
    config = SimulationConfig(
        gateway_url=arguments.gateway.rstrip("/"),
        viewers=arguments.viewers,
        auctions=arguments.auctions,
        duration_seconds=arguments.seconds,
        churn_per_minute=arguments.churn,
        tabs_per_viewer=arguments.tabs,
        auction_prefix=arguments.prefix,
        seed=arguments.seed,
    )
    return config, max(arguments.every, 0.1), arguments.verbose


async def simulate(config: SimulationConfig, every_seconds: float, out: TextIO) -> Progress:
    """Runs the simulation, printing progress to ``out`` (one line rewritten in place on a terminal)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stop.set)
    in_place = out.isatty()

    def report(progress: Progress) -> None:
        line = progress.line(config.duration_seconds)
        if in_place:
            out.write(f"\r\x1b[K{line}")
        else:
            out.write(f"{line}\n")
        out.flush()

    print(
        f"simulate: {config.viewers} viewers on {config.auctions} auctions at {config.gateway_url} "
        f"for {config.duration_seconds:g} s (Ctrl-C stops early)",
        file=out,
    )
    try:
        final = await Simulation(config).run(stop, report, every_seconds)
    finally:
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(stop_signal)
    if in_place:
        out.write("\n")
    if final.joins == 0:
        print(f"simulate: no viewer could connect to {config.gateway_url}: is the gateway running?", file=out)
    elif final.connected == 0:
        print(
            f"simulate: done; the gateway at {config.gateway_url} dropped every viewer"
            f" ({final.dropped} drops, {final.reconnected} reconnections) and none was connected at the end.",
            file=out,
        )
    elif final.rooms_agree():
        print("simulate: done; the gateway's counts match the simulated viewers in every room.", file=out)
    else:
        print(
            "simulate: done; some rooms' counts differ from the simulated viewers "
            "(other clients in those rooms, or updates still coalescing).",
            file=out,
        )
    return final


def main(argv: Sequence[str] | None = None) -> None:
    config, every_seconds, verbose = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("simulate").setLevel(logging.DEBUG)
    else:
        # The libraries' lines about a dropped connection repeat, per viewer, what the progress line
        # counts (dropped / reconnected).
        logging.getLogger(TRANSPORT_LOGGER).setLevel(logging.CRITICAL)
    final = asyncio.run(simulate(config, every_seconds, sys.stderr))
    # Ctrl-C is the documented way to end early: it exits 0 like a run that lasted its time.
    sys.exit(0 if final.joins > 0 else 1)
