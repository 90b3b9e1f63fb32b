"""Rich and markdown tables of evaluation results."""
from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

COLUMNS = ["n", "accuracy", "precision", "recall", "f1", "roc_auc", "average_precision", "eer", "ece"]
#: Shown when some detector describes its training images (:func:`fakescope.evaluation.metrics.familiarity_metrics`).
FAMILIARITY = ("unfamiliar", "uncertain_real", "uncertain_fake", "roc_auc_familiar")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def metrics_table(rows: list[dict[str, Any]]) -> Table:
    """One column per (model, data) evaluation, one row per metric: reads well however many metrics there are."""
    table = Table("metric", *[f"{r['model']}\n{r['data']}" for r in rows])
    described = [c for c in FAMILIARITY if any(r.get(c) is not None for r in rows)]
    for c in ("threshold", *COLUMNS, "accuracy_real", "accuracy_fake", "accuracy_at_eer_threshold", *described):
        table.add_row(c, *[_fmt(r.get(c)) for r in rows])
    table.add_row(escape("confusion [[tn, fp], [fn, tp]]"), *[str(r["confusion_matrix"]) for r in rows])
    return table


def _cross(rows: list[dict[str, Any]], key: str) -> tuple[list[str], list[str], dict]:
    models = list(dict.fromkeys(r["model"] for r in rows))
    datas = list(dict.fromkeys(r["data"] for r in rows))
    cell = {(r["model"], r["data"]): r.get(key) for r in rows}
    return models, datas, cell


def cross_table(rows: list[dict[str, Any]], key: str = "roc_auc") -> Table:
    """Model x dataset table of one metric."""
    models, datas, cell = _cross(rows, key)
    table = Table(f"{key}: model \\ data", *datas)
    for m in models:
        table.add_row(m, *[_fmt(cell.get((m, d))) for d in datas])
    return table


def cross_markdown(rows: list[dict[str, Any]], key: str = "roc_auc") -> str:
    models, datas, cell = _cross(rows, key)
    lines = [f"| {key} | " + " | ".join(datas) + " |", "|---|" + "---|" * len(datas)]
    lines += [f"| {m} | " + " | ".join(_fmt(cell.get((m, d))) for d in datas) + " |" for m in models]
    return "\n".join(lines)
