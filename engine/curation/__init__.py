"""Dataset curation: slices (static and dynamic) and label corrections with history."""
