"""Parameters and multiply-adds: see :mod:`atrous.cost` (a model-level measurement that
compression and inspection use too, so it sits below them)."""

from atrous.cost import Cost, count_parameters, measure_cost

__all__ = ["Cost", "count_parameters", "measure_cost"]
