"""Figures without pyplot: the project's plots build on this so that importing or calling them
never changes the matplotlib backend of the process (a notebook keeps its inline backend)."""
from __future__ import annotations

# Deferred on purpose, so that importing this module does not load matplotlib: the function-local
# imports (of these libraries or of this project's modules that import them).


def subplots(*args, figsize, **kwargs):
    """(Figure, axes) like `pyplot.subplots`, but a bare `matplotlib.figure.Figure`: no pyplot
    state and no backend switch, so a notebook's backend is left alone and the figure is freed
    with its last reference. `Figure.savefig` renders through the Agg canvas by itself."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(*args, **kwargs)
