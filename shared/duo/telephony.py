"""What Duo documents for ``GET /admin/v2/logs/telephony``: its path and its limits.

Standard library only: the deployment's settings check (run in a bare Python image by
cloudbuild.yaml) reads these too.
"""

from __future__ import annotations

TELEPHONY_PATH = "/admin/v2/logs/telephony"
PAGE_LIMIT = 1000  # the most records one page may hold
RETENTION_MS = 180 * 86_400_000  # Duo keeps 180 days of logs
AVAILABILITY_DELAY_MS = 120_000  # Duo serves nothing newer than two minutes (not 120 ms)
