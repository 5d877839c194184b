"""The ``attnkit`` command. Each subcommand is a thin wrapper over the Python API."""

from __future__ import annotations

import typer

app = typer.Typer(help="attnkit: train, decode, load and serve Transformers.", no_args_is_help=True,
                  pretty_exceptions_enable=False)


@app.callback()
def main() -> None:
    """attnkit command line."""


if __name__ == "__main__":
    app()
