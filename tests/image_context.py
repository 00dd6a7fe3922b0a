"""The production image's build context: the repository as `docker build` sees it through
.dockerignore (no Docker engine is needed to know what the image holds).

The matching follows Docker's rules for the patterns .dockerignore uses: a pattern is matched
against each path from the context root with ``*`` and ``?`` not crossing ``/``, ``**``
matching any number of directories, a matched directory excluding everything below it, and
the last matching pattern winning (so ``!path`` keeps a path below an excluded folder).
"""

from __future__ import annotations

import re
import shutil
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


@cache
def patterns(root: Path = ROOT) -> tuple[tuple[bool, re.Pattern[str]], ...]:
    """Each pattern in order, with whether it is an exception (``!``: kept)."""
    lines = (line.strip() for line in (root / ".dockerignore").read_text().splitlines())
    kept = [line for line in lines if line and not line.startswith("#")]
    return tuple((line.startswith("!"), _regex(line.lstrip("!").strip("/"))) for line in kept)


def excluded(relative: str, root: Path = ROOT) -> bool:
    """As Docker decides: the last pattern matching the path (or a folder above it) wins."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for kept, pattern in patterns(root):
        if any(pattern.match(prefix) for prefix in prefixes):
            result = not kept
    return result


def context_files(root: Path = ROOT) -> list[str]:
    """Every file `docker build` would send, as paths relative to the root."""
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_file() and not excluded(relative, root):
            files.append(relative)
    return files


def copy_context(destination: Path, root: Path = ROOT) -> Path:
    for relative in context_files(root):
        target = destination / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, target)
    return destination
