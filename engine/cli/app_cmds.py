"""``loupe app``: serve the Loupe App (a local browser dashboard) over one workspace."""
from __future__ import annotations

import ipaddress
import sys

import click

from . import cli
from .common import db_option, handle_errors, open_ws


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cli.command("app")
@db_option()
@click.option("--port", type=click.IntRange(0, 65535), default=5151, show_default=True, help="Port (0: any free one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--read-only", is_flag=True, help="Refuse every change (label fixes, slices, commits).")
@click.option("--open", "open_browser", is_flag=True, help="Open the App in the default browser.")
@handle_errors
def app_cmd(db: str, port: int, host: str, read_only: bool, open_browser: bool) -> None:
    """Browse a workspace in the browser: grid, queries, patches, item view, insights, metrics, label fixes."""
    import webbrowser

    from ..app.server import App

    if not is_loopback(host):
        click.echo(f"warning: binding {host}: anyone who can reach this address can read the workspace's "
                   "images and labels (writes still need the launch token)", err=True)
    ws = open_ws(db, read_only=read_only)
    try:
        app = App(ws, host=host, port=port, read_only=read_only)
    except OSError as e:
        raise click.ClickException(f"cannot bind {host}:{port}: {e.strerror or e}") from None
    click.echo(f"Loupe App serving {db} at {app.url}" + (" (read-only)" if read_only else "")
               + " — Ctrl-C to stop")
    sys.stdout.flush()
    if open_browser:
        webbrowser.open(app.url)
    try:
        app.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        app.httpd.server_close()
        ws.close()
