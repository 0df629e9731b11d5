"""clusterbench: a benchmark runner for unsupervised image clustering."""

__version__ = "0.1.0"
