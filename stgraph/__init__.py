"""stgraph: spatio-temporal graph forecasting on traffic sensor networks."""
__version__ = "0.1.0"
