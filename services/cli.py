"""The ``duo-telephony`` command: each sub-command lives in the module that does its work."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, one-line help). Each module exposes add_arguments(parser) and run(args) -> int;
# they are imported only when chosen, so `duo-telephony udm` never loads the Cloud clients.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("harness.demo", "run the whole pipeline locally against the Duo simulator"),
    "status": (
        "services.status",
        "show each source's watermark, lag, windows and last error",
    ),
    "retry": ("services.retry", "put a quarantined or failed window back to be fetched again"),
    "simulate": ("simulator.command", "run the Duo Admin API telephony simulator on 127.0.0.1"),
    "udm": ("shared.secops.udm_preview", "show the UDM events SecOps will make of raw records"),
    "verify": (
        "shared.secops.bucket_audit",
        "audit the objects the SecOps feed will read: lines, duplicates, names, gaps",
    ),
}


# The local harness and the simulator stay out of the production image.
DEVELOPMENT_PACKAGES = {"harness", "simulator"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="duo-telephony",
        description="Moves Cisco Duo telephony logs into Cloud Storage for Google SecOps.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = None
    args_list = list(sys.argv[1:] if argv is None else argv)
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if args_list and args_list[0] == name:
            try:
                chosen = importlib.import_module(module_name)
            except ModuleNotFoundError as error:
                if error.name not in DEVELOPMENT_PACKAGES:
                    raise
                print(
                    f"duo-telephony {name}: a development command; the production image "
                    "leaves it out (run it from a checkout: ./dev " + name + ")",
                    file=sys.stderr,
                )
                return 2
            chosen.add_arguments(command_parser)
    args = parser.parse_args(args_list)
    assert chosen is not None
    return int(chosen.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
