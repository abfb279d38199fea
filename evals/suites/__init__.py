"""Evaluation suites: synthetic generators and dataset loaders."""
