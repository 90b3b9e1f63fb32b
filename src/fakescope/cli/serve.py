"""``fakescope serve`` and ``models``: the web service, and the detectors it and every command can load."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from fakescope.cli._util import TableOrJsonOpt, app, console, fail, write_json


@app.command()
def models(fmt: TableOrJsonOpt = "table") -> None:
    """List every registered detector, its size, input and whether weights ship with fakescope."""
    from rich.table import Table

    from fakescope.inference.catalog import detector_catalog

    rows = detector_catalog()
    if fmt == "json":
        write_json(rows)
        return
    table = Table("name", "params", "input", "shipped", "description")
    for r in rows:
        shipped = ("yes (default)" if r["default"] else "yes") if r["shipped"] else "-"
        table.add_row(r["name"], f"{r['params']:,}", f"{r['input_mode']} {r['input_size']}", shipped, r["description"])
    console.print(table)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Detector name or checkpoint path (default: FAKESCOPE_MODEL or the shipped default).")] = None,
) -> None:
    """Serve the REST API (/docs) and the web page (/). Limits and API key: FAKESCOPE_* variables."""
    try:
        from fakescope.serve import Settings, run
    except ImportError as err:
        raise fail(f"the web service needs its extra packages: pip install 'fakescope[serve]' ({err})") from None
    try:
        settings = Settings.from_env(model=model)
    except ValueError as err:
        raise fail(str(err)) from None
    run(settings, host=host, port=port)
