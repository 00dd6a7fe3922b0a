"""The Secret Manager versions a fleet deployment reads: one line per secret,
ORIGIN<TAB>SOURCE<TAB>projects/P/secrets/NAME/versions/V, ORIGIN being ``file`` (a source of the
sources file, read by the fetcher) or ``parent`` (the MSP parent, read by the planner, which
lists its children, and by the fetcher, which reads them with its keys).

    python3 deploy/fleet_secrets.py SOURCES_FILE MSP_PARENT_FILE

A file that does not exist is skipped (a single-account deployment has neither). Both are
checked by the services' own parsers (shared/pipeline/sources.py); a bad one exits 2 with
their one-line error. Used by deploy/bootstrap.sh and cloudbuild.yaml's preflight.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.pipeline.sources import SourcesError, parse_parent, parse_sources_file


def main(sources_file: str, parent_file: str) -> int:
    lines = []
    path = Path(sources_file)
    try:
        if path.exists():
            for spec in parse_sources_file(path.read_text(encoding="utf-8")):
                lines.append(f"file\t{spec.id}\t{spec.skey_secret}")
        path = Path(parent_file)
        if path.exists():
            parent = parse_parent(path.read_text(encoding="utf-8"))
            lines.append(f"parent\t{parent.id}\t{parent.skey_secret}")
    except SourcesError as error:
        print(f"{path}: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
