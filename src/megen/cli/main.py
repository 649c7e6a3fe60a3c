"""Root of the ``megen`` CLI: each command group lives in its own module and registers here.

Errors follow :mod:`megen.cli.common`: bad input exits 2 with one line, an internal error exits 1 with
one line, and ``megen --debug <command>`` (or ``MEGEN_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import sys  # noqa: E402

import typer  # noqa: E402

from megen.cli import app as _app  # noqa: E402
from megen.cli import config as _config  # noqa: E402
from megen.cli import experiments as _experiments  # noqa: E402
from megen.cli import generate as _generate  # noqa: E402
from megen.cli import link as _link  # noqa: E402
from megen.cli import mcs as _mcs  # noqa: E402
from megen.cli import netsim as _netsim  # noqa: E402
from megen.cli import protocols as _protocols  # noqa: E402
from megen.cli import serve as _serve  # noqa: E402
from megen.cli import train as _train  # noqa: E402
from megen.cli.common import DEBUG_ENV, debug_enabled, error_boundary  # noqa: E402

app = typer.Typer(
    name="megen",
    help="Mobile Edge Generation: latent diffusion split between edge servers and user equipment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", envvar=DEBUG_ENV, help="Show the Python traceback of an internal error."
    ),
) -> None:
    """Mobile Edge Generation: latent diffusion split between edge servers and user equipment."""


_generate.register(app)
_config.register(app)
_train.register(app)
_link.register(app)
_mcs.register(app)
_protocols.register(app)
_experiments.register(app)
_netsim.register(app)
_serve.register(app)
_app.register(app)


def main() -> None:
    """Console entry point: the app inside the same error boundary as every command."""
    try:
        with error_boundary(debug=debug_enabled() or "--debug" in sys.argv[1:]):
            app()
    except typer.Exit as exc:  # raised by the boundary itself, outside click's own handling
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
