"""The ``fakescope`` command line: one thin Typer command per job over importable functions.

As spaCy's ``spacy/cli``: :mod:`fakescope.cli._util` holds the app and the options the commands share; each module
here holds one command or a group of related ones and registers it on the app when imported. Commands import their
heavy modules (torch, the registry, ONNX Runtime) inside the function, so ``--help`` and ``--version`` stay fast.
"""
from __future__ import annotations

from typing import Annotated

import typer

from fakescope.cli import compress, data, evaluate, explain, generate, robustness, scan, serve, train  # noqa: F401
from fakescope.cli._util import app, setup_logging, state, version_callback

__all__ = ["app"]


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results: no logs, notes or progress bars (also an option of each long command).")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.", callback=version_callback, is_eager=True)] = False,
) -> None:
    from fakescope.allocator import reuse_freed_memory
    from fakescope.inference.paths import tolerant_stdio

    tolerant_stdio()
    state.quiet = quiet
    setup_logging(verbose)
    reuse_freed_memory()
