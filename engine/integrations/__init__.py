"""Adapters to the tools Loupe's users already have (PyTorch). Each imports its library lazily; the
library is an optional extra."""
