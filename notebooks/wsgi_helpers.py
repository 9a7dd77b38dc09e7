"""Notebook 03's own helper: a stop-gap for harness.slowclients until the harness is fixed.

harness.slowclients.slow_clients still asks ``LoadReport.downtime()`` for its
``impaired_s`` figure, a method the harness refactor removed from
harness.load.LoadReport (AttributeError). Until the harness has it again, this
module gives LoadReport that method back, with the meaning slow_clients
documents; when the harness has its own, this does nothing.
"""

from __future__ import annotations

from harness.load import LoadReport


def _impaired(self: LoadReport) -> float | None:
    """Seconds from the first failed request to the first success after the last failure.

    0.0 when nothing failed; None when the service never answered again.
    """
    failures = [o for o in self.outcomes if not o.ok]
    if not failures:
        return 0.0
    first = min(o.start for o in failures)
    last = max(o.end for o in failures)
    recovered = [o.end for o in self.outcomes if o.ok and o.start >= last - 1e-3]
    return (min(recovered) - first) if recovered else None


if not hasattr(LoadReport, "downtime"):
    LoadReport.downtime = _impaired
