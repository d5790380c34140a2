"""The ``loupe`` command line. Each command group lives in its own module of this package."""
from __future__ import annotations

import click


# color=True: click.echo must not strip ANSI sequences from piped output (csv/json stay byte-exact; the
# table format escapes control characters itself, engine/cli/output.py)
@click.group(context_settings={"help_option_names": ["-h", "--help"], "color": True})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="loupe")
def cli(debug: bool) -> None:
    """Loupe: datasets, model runs and their errors in one DuckDB file."""


def _load_commands() -> None:
    # importing the modules registers their commands on `cli`
    import importlib

    from . import data  # noqa: F401  (registers its commands)

    for optional in ("demo", "io_cmds", "eval_cmds", "query_cmds", "analysis_cmds", "predict_cmds",
                     "tutorial_cmds", "errors_cmds", "labeling_cmds", "similarity_cmds", "app_cmds",
                     "report_cmds", "spark_cmds", "curation_cmds", "store_cmds"):
        try:
            importlib.import_module(f"{__name__}.{optional}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{optional}":
                raise


STANDALONE = False  # True in the `loupe` process itself (main()), not when click's test runner calls `cli`


def main() -> None:
    global STANDALONE
    STANDALONE = True
    _load_commands()
    cli(prog_name="loupe")
