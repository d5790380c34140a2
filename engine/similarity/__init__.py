"""Similarity layer: embedders, embedding sets, search and mining."""
