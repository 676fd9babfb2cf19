"""The cyclic GC paused while a process starts up, and out of the way after.

Start-up (the imports, the config, the engine; in a Lambda cold start botocore's models and
the DynamoDB client too) allocates a few hundred thousand objects that live as long as the
process, and almost no garbage (~1,000 unreachable objects). The collector would walk them
again and again (~90 collections during the start-up of `rotate U`, ~120 in a Lambda cold
start: 25-35 ms of a scheduled pass's CPU), and the interpreter's exit would collect them
all once more. `pause()` stops the collector; `resume()`, once start-up is over, moves
everything alive into the permanent generation (`gc.freeze`) and starts it again, so a
long fleet pass or a warm function collects its own garbage as before, without re-walking
start-up's objects. `exiting()` freezes what is left before the interpreter's teardown.

Who pauses: the `rotator` process itself (`rotator.cli.main()` with no argv; resumed once
the probe has built the HTTP client: rotator/cli/rotate.py, rotator/cli/wiring.py) and the
Lambda runtime's import of the handler (`LAMBDA_TASK_ROOT` set; resumed at the first
invocation, whatever it brings: rotator/aws_lambda/__init__.py). A program that calls
`main(argv)` in-process, or imports the handler outside Lambda, keeps its collector as it was.
"""

from __future__ import annotations

import gc

__all__ = ["exiting", "pause", "resume"]

_paused = False


def pause() -> None:
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """Start-up is over: freeze what it built, collect from here on (if `pause` stopped it)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()


def exiting() -> None:
    """The process is about to exit: nothing it holds needs collecting any more."""
    gc.freeze()
