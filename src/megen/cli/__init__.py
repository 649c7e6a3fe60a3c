"""The ``megen`` command line (typer + rich). Thin: parse options, call the library, print."""
