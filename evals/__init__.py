"""fanout evals: isolated vs monolithic, measured."""
