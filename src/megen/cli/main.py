"""Root of the ``megen`` CLI: each command group lives in its own module and registers here."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import typer  # noqa: E402

from megen.cli import config as _config  # noqa: E402
from megen.cli import experiments as _experiments  # noqa: E402
from megen.cli import generate as _generate  # noqa: E402
from megen.cli import link as _link  # noqa: E402
from megen.cli import protocols as _protocols  # noqa: E402
from megen.cli import train as _train  # noqa: E402

app = typer.Typer(
    name="megen",
    help="Mobile Edge Generation: latent diffusion split between edge servers and user equipment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_generate.register(app)
_config.register(app)
_train.register(app)
_link.register(app)
_protocols.register(app)
_experiments.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
