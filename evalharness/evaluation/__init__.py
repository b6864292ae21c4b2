"""`evalharness eval`: statistical metrics of checkpoints on held-out pairs and on their stored samples, resumably."""

from evalharness.evaluation.common import CheckpointReport, EvalConfig, MetricRow, parse_metrics
from evalharness.evaluation.run import evaluate

__all__ = ["CheckpointReport", "EvalConfig", "MetricRow", "evaluate", "parse_metrics"]
