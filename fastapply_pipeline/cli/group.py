"""The `fastapply` click group, the one every command module adds its commands to: a settings error or a
full disk is one line naming the fix in every command, never a traceback."""

import errno
import os

import click

from fastapply_pipeline.config import ConfigError, FastApplyConfig, load_config


def load_settings(config_file: str | None) -> FastApplyConfig:
    """fastapply.yaml (or --config), validated; an invalid file is one line naming the fix."""
    try:
        return load_config(config_file)
    except ConfigError as err:
        raise click.ClickException(str(err)) from None


class _Commands(click.Group):
    """Every command: a settings error or a full disk is one line naming the fix, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ConfigError as err:
            raise click.ClickException(str(err)) from None
        except Exception as err:
            # OSError ENOSPC from our writes; SQLite's "database or disk is full" from the instance's.
            full = (
                isinstance(err, OSError) and err.errno == errno.ENOSPC
            ) or "database or disk is full" in str(err)
            if not full:
                raise
            where = f" writing {err.filename}" if getattr(err, "filename", None) else ""
            raise click.ClickException(
                f"no space left on the device{where}: free some space (DAGSTER_HOME "
                f"{os.environ.get('DAGSTER_HOME', '(unset)')}, storage.artifacts_dir and cache_dir), then run "
                "again; finished steps are kept"
            ) from None


@click.group(cls=_Commands)
@click.version_option(package_name="fastapply-pipeline")
def main() -> None:
    """fastapply: build Fast Apply training data and models with Dagster."""


config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings file (default: $FASTAPPLY_CONFIG, else ./fastapply.yaml).",
)
