"""Inspect: per-layer summaries with multiply-adds, the paper's Table 1, and network diagrams."""

from __future__ import annotations

from resnet.inspect.summary import LayerInfo, Summary, human, meta_model, parse_input_size, summary
from resnet.inspect.table1 import TABLE1_MODELS, Table1, table1

__all__ = ["TABLE1_MODELS", "LayerInfo", "Summary", "Table1", "human", "meta_model", "parse_input_size", "summary", "table1", "render_diagram"]


def render_diagram(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Draw a model to .svg/.png/.pdf/.dot; see ``resnet.inspect.diagram.render``."""
    from resnet.inspect.diagram import render

    return render(*args, **kwargs)
