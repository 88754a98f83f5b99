"""The ``simulate`` command: arguments, a progress line, Ctrl-C, and a summary at the end."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

from simulate.simulation import TRANSPORT_LOGGER, Progress, Simulation, SimulationConfig

if TYPE_CHECKING:
    from simulate.auction_run import AuctionProgress, AuctionRunConfig

DESCRIPTION = """\
Brings N simulated viewers (real Socket.IO clients) to M auctions on a running socket gateway, with
join/leave churn, for T seconds, and prints a progress line: connections, joins and leaves, and for
the busiest rooms the count the gateway broadcasts next to the count the simulation expects
(gateway/simulated; a dashboard tab open on the same auction adds one to the gateway's side).

Auctions are named <prefix>1 ... <prefix>M ("auction-1" is the dashboard's default). Turn analytics on
for an auction in the dashboard to have its minutes stored.

Start the system first (scripts/start), then for example:
  .venv/bin/python -m simulate --viewers 200 --auctions 3 --seconds 120

With --auction-run it also runs an auction on each of them, as the auction platform's backend would:
lots open and close (--lots, --lot-seconds), signed-in viewers (--signed-in, a share of them) bid on
the lots of the room they are in, and each event goes to the ingest service's AuctionEventService
(--ingest, with the stack's INTERNAL_API_KEY, which scripts/start prints), so the dashboard's lots,
markers and funnel fill in while it runs. For example:
  INTERNAL_API_KEY=... .venv/bin/python -m simulate --viewers 60 --auctions 1 --auction-run --enable-analytics
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


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def parse_arguments(
    argv: Sequence[str] | None, env: Mapping[str, str] | None = None
) -> tuple[SimulationConfig, float, bool, AuctionRunConfig | None]:
    """The simulation's configuration, the progress interval, ``--verbose`` and the auction run (or
    None), from the command line (the internal key's default from ``env``, the process's by default)."""
    env = os.environ if env is None else env
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
        "--seconds",
        type=_non_negative_float,
        default=None,
        help="T: how long to run (default: 60, or with --auction-run as long as its lots take)",
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
    auction = parser.add_argument_group("auction run")
    auction.add_argument(
        "--auction-run",
        action="store_true",
        help="also run lots and bids on each auction, sent to the ingest service as the backend would",
    )
    auction.add_argument(
        "--ingest", default="127.0.0.1:50051", help="the ingest service's gRPC address (default: %(default)s)"
    )
    auction.add_argument(
        "--internal-key",
        default=env.get("INTERNAL_API_KEY", ""),
        help="the ingest service's internal key (default: $INTERNAL_API_KEY)",
    )
    auction.add_argument(
        "--lots", type=_positive_int, default=10, help="lots per auction (default: %(default)s)"
    )
    auction.add_argument(
        "--lot-seconds",
        type=_non_negative_float,
        default=20.0,
        help="seconds from a lot's opening to its hammer (default: %(default)s)",
    )
    auction.add_argument(
        "--pause-seconds",
        type=_non_negative_float,
        default=3.0,
        help="seconds between one lot's hammer and the next opening (default: %(default)s)",
    )
    auction.add_argument(
        "--bids-per-lot",
        type=_non_negative_float,
        default=4.0,
        help="bids a wanted lot draws on average; a quarter of the lots draw none (default: %(default)s)",
    )
    auction.add_argument(
        "--signed-in",
        type=_share,
        default=0.3,
        help="share of the viewers who are signed in and bid, with their viewer id as bidder id "
        "(default: %(default)s)",
    )
    auction.add_argument(
        "--enable-analytics",
        action="store_true",
        help="turn each auction's viewer analytics on first "
        "(events of an auction with analytics off are skipped)",
    )
    arguments = parser.parse_args(argv)
    auction_run = None
    if arguments.auction_run:
        # Imported only for an auction run: a run of viewers alone loads no gRPC (and its garbage
        # collection, and so the timing of python-socketio's leftover connections, stays as it was).
        from simulate.auction_run import AuctionRunConfig

        if not arguments.internal_key:
            parser.error("--auction-run needs the ingest service's key: --internal-key or INTERNAL_API_KEY")
        auction_run = AuctionRunConfig(
            ingest_target=arguments.ingest,
            internal_key=arguments.internal_key,
            lots=arguments.lots,
            lot_seconds=arguments.lot_seconds,
            pause_seconds=arguments.pause_seconds,
            bids_per_lot=arguments.bids_per_lot,
            signed_in_share=arguments.signed_in,
            enable_analytics=arguments.enable_analytics,
        )
    seconds = arguments.seconds
    if seconds is None:
        # Long enough for every lot, and a few seconds for the last events to be counted.
        lots_take = arguments.lots * (arguments.lot_seconds + arguments.pause_seconds) + 5
        seconds = lots_take if auction_run else 60.0
    config = SimulationConfig(
        gateway_url=arguments.gateway.rstrip("/"),
        viewers=arguments.viewers,
        auctions=arguments.auctions,
        duration_seconds=seconds,
        churn_per_minute=arguments.churn,
        tabs_per_viewer=arguments.tabs,
        auction_prefix=arguments.prefix,
        seed=arguments.seed,
    )
    return config, max(arguments.every, 0.1), arguments.verbose, auction_run


def signed_in_bidders(simulation: Simulation, share: float) -> Callable[[str], list[str]]:
    """Who may bid in a room: the connected viewers in it whose viewer id is among the signed-in share.

    Viewer ids are ``sim-viewer-<n>``; the first ``ceil(share * ids)`` of them are signed in, spread
    over the auctions as the viewers are.
    """
    ids = math.ceil(simulation.config.viewers / simulation.config.tabs_per_viewer)
    signed_in = {f"sim-viewer-{number}" for number in range(math.ceil(share * ids))}

    def bidders_in(auction_id: str) -> list[str]:
        return sorted(
            {
                viewer.viewer_id
                for viewer in simulation.viewers
                if viewer.up.is_set() and viewer.auction_id == auction_id and viewer.viewer_id in signed_in
            }
        )

    return bidders_in


async def simulate(
    config: SimulationConfig,
    every_seconds: float,
    out: TextIO,
    auction_run: AuctionRunConfig | None = None,
) -> Progress:
    """Runs the simulation, printing progress to ``out`` (one line rewritten in place on a terminal).

    With ``auction_run``, lots and bids run on every auction beside the viewers until both are done.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(stop_signal, stop.set)
    in_place = out.isatty()
    simulation = Simulation(config)
    auction = None
    if auction_run is not None:
        from simulate.auction_run import AuctionRun  # imported here: see parse_arguments

        auction = AuctionRun(
            auction_run,
            config.auction_ids,
            signed_in_bidders(simulation, auction_run.signed_in_share),
            seed=config.seed,
        )

    def report(progress: Progress) -> None:
        line = progress.line(config.duration_seconds)
        if auction is not None:
            line += f"  |  {auction.progress.line()}"
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
    auction_ending = asyncio.Event()
    auction_task = None if auction is None else asyncio.create_task(auction.run(auction_ending))
    try:
        final = await simulation.run(stop, report, every_seconds)
    finally:
        # The viewers have gone: the lot up is closed and the auction ended.
        auction_ending.set()
        auction_progress = None if auction_task is None else await auction_task
        for stop_signal in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(stop_signal)
    if in_place:
        out.write("\n")
    if auction_progress is not None:
        _report_auction(auction_progress, config, out)
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


def _report_auction(progress: AuctionProgress, config: SimulationConfig, out: TextIO) -> None:
    if progress.problem:
        print(f"simulate: the auction run stopped: {progress.problem}.", file=out)
        return
    stored = progress.outcomes.get("STORED", 0)
    skipped = progress.outcomes.get("SKIPPED_ANALYTICS_DISABLED", 0)
    print(
        f"simulate: auction run done; {progress.lots_closed} lots closed, {progress.bids} bids, "
        f"{stored} events stored.",
        file=out,
    )
    if skipped:
        print(
            f"simulate: {skipped} events were skipped because analytics are off for some of "
            f"{', '.join(config.auction_ids)}: turn them on in the dashboard (or pass --enable-analytics).",
            file=out,
        )
    if progress.failed:
        print(
            f"simulate: {progress.failed} events could not be sent (the ingest service did not answer).",
            file=out,
        )


def main(argv: Sequence[str] | None = None) -> None:
    config, every_seconds, verbose, auction_run = parse_arguments(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if verbose:
        logging.getLogger("simulate").setLevel(logging.DEBUG)
    else:
        # The libraries' lines about a dropped connection repeat, per viewer, what the progress line
        # counts (dropped / reconnected).
        logging.getLogger(TRANSPORT_LOGGER).setLevel(logging.CRITICAL)
    final = asyncio.run(simulate(config, every_seconds, sys.stderr, auction_run))
    # Ctrl-C is the documented way to end early: it exits 0 like a run that lasted its time.
    sys.exit(0 if final.joins > 0 else 1)
