"""Option decorators shared by several subcommands, and the error boundary of the CLI."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from deid.errors import DeidError
from deid.scrub.pixel_settings import DEFAULT_STRENGTH, STRENGTHS


def library_errors_to_click(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the package's own exceptions into a one-line CLI error with exit code 2."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except DeidError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = 2  # documented: 2 = usage or input error
            raise error from exc

    return wrapper


def seed_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--seed",
        type=int,
        default=0,
        show_default=True,
        help="Seed of every random choice; same seed, same output.",
    )(func)


def quiet_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--quiet", is_flag=True, help="No progress bars; errors only.")(func)


def strength_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--strength",
        type=click.Choice(list(STRENGTHS)),
        default=DEFAULT_STRENGTH,
        show_default=True,
        help="Pixel scrub budget, steps, weights and SSIM floor (deid.scrub.pixel_settings; "
        "measured in benchmarks/RESULTS.md).",
    )(func)
