"""Clustering methods: one file per method, each a subclass of ``base.Method``."""
