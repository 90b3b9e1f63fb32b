"""``python -m fakescope`` and the ``fakescope`` command: a Ctrl-C ends with one line and at once.

Importing the CLI's libraries takes seconds on a busy machine; a Ctrl-C meanwhile would print a traceback through
the import machinery. And once a command is interrupted (its output closed, its message printed), tearing down
the interpreter (collecting PyTorch's hundreds of thousands of objects) can take longer than the work did on a
busy machine, so an interrupted command leaves without it; its decoding workers die with it
(:func:`fakescope.inference.pool.die_with_parent`).
"""
from __future__ import annotations

import os
import sys

#: Exit status of an interrupted command: 128 + SIGINT, as a shell reports it.
INTERRUPTED = 130


def _leave(message: str | None = None) -> None:
    if message:
        sys.stderr.write(message + "\n")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(INTERRUPTED)


def main() -> None:
    try:
        from fakescope.cli import app
    except KeyboardInterrupt:
        _leave("fakescope: interrupted")
    try:
        app(prog_name="fakescope")
    except KeyboardInterrupt:  # outside a command (Typer turns one inside into exit status 130)
        _leave("fakescope: interrupted")
    except SystemExit as done:
        if done.code == INTERRUPTED:
            _leave()
        raise


if __name__ == "__main__":
    main()
