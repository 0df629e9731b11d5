"""Benchmark reporting: aggregate run folders into paper-style tables, compare with
published numbers, gate nightly regressions, and draw plots."""
