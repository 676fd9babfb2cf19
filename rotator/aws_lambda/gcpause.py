"""The cyclic GC paused during a cold start, and its objects frozen out of its way after.

A cold start (the imports, the config, botocore's models and the DynamoDB client)
allocates a few hundred thousand objects that live as long as the function, and almost
no garbage; the collector would walk them over and over (~120 collections, 25-35 ms of
CPU of a scheduled pass with nothing due on a small machine). `pause()` stops it when the
handler module is imported by the Lambda runtime (LAMBDA_TASK_ROOT is set); `resume()`,
at the first invocation once the engine is built (or failed to build), moves everything
alive into the permanent generation (`gc.freeze`) and starts the collector again: the
pass and every warm invocation after it collect their own garbage as before, without
re-walking the start-up's objects.

Only in the Lambda runtime: a program or a test importing `rotator.aws_lambda` keeps its
collector as it was. (The command line does the same: rotator/cli/gcpause.py.)
"""

from __future__ import annotations

import gc
import os

__all__ = ["pause", "resume"]

_paused = False


def pause() -> None:
    """Stop the collector if this process is a Lambda function's (and it is running)."""
    global _paused
    if os.environ.get("LAMBDA_TASK_ROOT") and gc.isenabled():
        gc.disable()
        _paused = True


def resume() -> None:
    """The cold start is over: freeze what it built, collect from here on (if paused)."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
