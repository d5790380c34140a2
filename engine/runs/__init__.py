"""Model-run evaluation: gather inputs in SQL, match with udfs kernels, write the matches index."""
