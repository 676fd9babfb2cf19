"""A local MotherDuck REST API simulator: a real HTTP server on loopback with fault injection.

Modules, one job each:

    apierror     the JSON error bodies (`ApiError`)
    validation   request-body rules from the spec
    model        users, tokens, Duckling configs, the clock; the REST semantics (pure logic)
    persistence  the optional state file (atomic saves)
    faults       fault rules, latency, the seedable RNG
    control      the unauthenticated `/_sim/*` control API
    server       HTTP routing, faults, request recording, responses
    cli          `python -m rotator.simulator` / `rotator simulator`

See docs/simulator.md for how to run and steer it.
"""

from __future__ import annotations

from rotator.simulator.apierror import ApiError
from rotator.simulator.faults import FaultRule, Faults, parse_rule
from rotator.simulator.model import Model
from rotator.simulator.records import OffsetClock

__all__ = ["ApiError", "FaultRule", "Faults", "Model", "OffsetClock", "parse_rule"]
