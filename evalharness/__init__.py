"""evalharness: train, sample, judge and rank preference-learning losses."""

__version__ = "0.1.0"
