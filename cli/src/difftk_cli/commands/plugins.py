"""`difftk plugins`: what is installed, what it provides, and what was skipped."""

from __future__ import annotations

import json

import click
from difftk.components import plugins as plugin_host
from rich.markup import escape
from rich.table import Table

from difftk_cli.console import out


def _report() -> list[dict]:
    host = plugin_host.host()
    rows = []
    for name, record in sorted(host.records.items()):
        components: dict[str, list[str]] = {}
        default_steps: dict[str, int | str] = {}  # a sampler's steps without --steps
        for info in host.registry.by_plugin(name):
            components.setdefault(info.kind, []).append(info.name)
            steps = getattr(info.cls, "default_steps", None) if info.kind == "sampler" else None
            if isinstance(steps, int):
                default_steps[info.name] = "adaptive" if getattr(info.cls, "adaptive", False) else steps
        shipped = sorted(c.name for c in host.registry.checkpoints.values() if c.plugin == name)
        if shipped:  # trained models the plugin ships: `difftk sample NAME`
            components["checkpoint"] = shipped
        conflicts = [f"{kind} '{comp}' (also in {', '.join(p for p in who if p != name)})"
                     for (kind, comp), who in host.registry.conflicts.items() if name in who]
        rows.append({
            "name": name, "version": record.version, "distribution": record.distribution,
            "status": record.status, "error": record.error, "components": components, "conflicts": conflicts,
            "default_steps": default_steps,
        })
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List installed plugins, their versions and the components each registers.

    \b
    Examples:
      difftk plugins
      difftk plugins --json
      DIFFTK_LOAD_PLUGINS=ddpm difftk plugins
    """
    rows = _report()
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    table = Table(title="difftk plugins", title_justify="left")
    for col in ("plugin", "version", "status", "components"):
        table.add_column(col, overflow="fold")
    for row in rows:
        steps = row["default_steps"]
        label = lambda n: n if n not in steps else f"{n} ({steps[n]})" if steps[n] == "adaptive" else f"{n} ({steps[n]} steps)"  # noqa: E731
        comps = "\n".join(f"[bold]{kind}[/]: {', '.join(map(label, names))}" for kind, names in row["components"].items())
        if row["conflicts"]:
            comps += "\n" + "\n".join(f"[red]conflict:[/] {escape(c)}" for c in row["conflicts"])
        status = {"loaded": "[green]loaded[/]", "blocked": "[dim]blocked[/]"}.get(row["status"], "[red]skipped[/]")
        if row["error"]:
            comps = f"[red]{escape(row['error'])}[/]"
        table.add_row(row["name"], row["version"] or "-", status, comps or "-")
    if not rows:
        out.print("no difftk plugins installed (or DIFFTK_LOAD_PLUGINS is empty)")
        return
    out.print(table)
