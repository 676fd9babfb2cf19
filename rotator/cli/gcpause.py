"""The cyclic GC paused while the command starts up, and out of the way when it exits.

Start-up (the imports, the config, the engine) allocates a few hundred thousand objects
that live until the process ends, and almost no garbage (~1,000 unreachable objects).
The collector would walk them again and again (~90 collections during the start-up of
`rotate U`), and the interpreter's exit would collect them all once more: about 4% of a
one-account rotation's instructions, for nothing. `pause()` stops the collector when the
command starts; `resume()` (the engine built: rotator/cli/wiring.py) moves everything
alive into the permanent generation (`gc.freeze`) and starts it again, so a long fleet
pass collects its own garbage as before, without re-walking start-up's objects.
`exiting()` freezes what is left before the interpreter's teardown.

Only for the `rotator` process itself (`main()` with no argv): a program that calls
`main(argv)` in-process keeps its collector as it was.
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
