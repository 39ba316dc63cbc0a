"""`difftk plugins`: what is installed, what it provides, and what was skipped."""

from __future__ import annotations

import json

import click
from difftk.components import plugins as plugin_host
from difftk.errors import UnknownComponentError, did_you_mean
from difftk.options import option_info
from rich.markup import escape
from rich.table import Table

from difftk_cli.console import out
from difftk_cli.options import Command


def _report() -> list[dict]:
    host = plugin_host.host()
    rows = []
    for name, record in sorted(host.records.items()):
        components: dict[str, list[str]] = {}
        default_steps: dict[str, int | str] = {}  # a sampler's steps without --steps
        options: dict[str, dict[str, list[dict]]] = {}  # kind -> component -> its options
        for info in host.registry.by_plugin(name):
            components.setdefault(info.kind, []).append(info.name)
            options.setdefault(info.kind, {})[info.name] = [_plain(option_info(a)) for a in info.option_fields().values()]
            steps = getattr(info.cls, "default_steps", None) if info.kind == "sampler" else None
            if isinstance(steps, int):
                default_steps[info.name] = "adaptive" if getattr(info.cls, "adaptive", False) else steps
        shipped = sorted(c.name for c in host.registry.checkpoints.values() if c.plugin == name)
        if shipped:  # trained models the plugin ships: `difftk sample NAME`
            components["checkpoint"] = shipped
        weights = sorted(f"{w.name} ({w.kind} {w.component})" for w in host.registry.weights.values() if w.plugin == name)
        if weights:  # weights the plugin ships for a component: its option weights=NAME
            components["weights"] = weights
        files = [{"name": c.name, "what": "checkpoint", "summary": c.summary}
                 for c in host.registry.checkpoints.values() if c.plugin == name]
        files += [{"name": w.name, "what": f"{w.kind} {w.component} weights", "summary": w.summary}
                  for w in host.registry.weights.values() if w.plugin == name]
        conflicts = [f"{kind} '{comp}' (also in {', '.join(p for p in who if p != name)})"
                     for (kind, comp), who in host.registry.conflicts.items() if name in who]
        rows.append({
            "name": name, "version": record.version, "distribution": record.distribution,
            "status": record.status, "error": record.error, "components": components, "conflicts": conflicts,
            "default_steps": default_steps, "options": options, "shipped": sorted(files, key=lambda f: f["name"]),
        })
    return rows


def _plain(info: dict) -> dict:
    """An option's description with JSON-ready values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in info.items()}


def _range(info: dict) -> str:
    """An option's allowed values in words: its choices, or its bounds (e.g. 0 ≤ x ≤ 1)."""
    if "choices" in info:
        return " | ".join(map(str, info["choices"]))
    low = f"{info['ge']:g} ≤ " if "ge" in info else f"{info['gt']:g} < " if "gt" in info else ""
    high = f" ≤ {info['le']:g}" if "le" in info else f" < {info['lt']:g}" if "lt" in info else ""
    return f"{low}x{high}" if low or high else ""


def _show_options(rows: list[dict], name: str) -> None:
    """Every component of plugin ``name``, or every component called ``name``, with its options; and what
    the plugin ships (trained checkpoints, weights), or the shipped file called ``name``."""
    shown, files = [], []
    for row in rows:
        for kind, comps in row["options"].items():
            for comp, opts in comps.items():
                if name in (row["name"], comp):
                    shown.append((row, kind, comp, opts))
        files += [(row, f) for f in row["shipped"] if name in (row["name"], f["name"])]
    if not shown and not files:
        known = sorted({r["name"] for r in rows} | {c for r in rows for comps in r["options"].values() for c in comps}
                       | {f["name"] for r in rows for f in r["shipped"]})
        raise UnknownComponentError(f"no plugin or component is called {name!r}{did_you_mean(name, known)} "
                                    "(`difftk plugins` lists them)")
    for row, kind, comp, opts in shown:
        table = Table(title=f"{kind} {comp} (plugin {row['name']} {row['version'] or ''})".rstrip(), title_justify="left")
        for col in ("option", "type", "default", "allowed", "help"):
            table.add_column(col, overflow="fold")
        for o in opts:
            default = "required" if o["required"] else "none" if o["default"] is None else str(o["default"])
            table.add_row(o["name"], o["type"] + (" | none" if o.get("optional") else ""), escape(default),
                          escape(_range(o)), escape(o.get("help", "")))
        if not opts:
            table.add_row("-", "", "", "", "no options")
        out.print(table)
    if files:
        table = Table(title="shipped (use by name: `difftk sample NAME`, an option weights=NAME, "
                            "features=classifier:NAME)", title_justify="left")
        for col in ("name", "what", "plugin", "summary"):
            table.add_column(col, overflow="fold")
        for row, f in files:
            table.add_row(f["name"], f["what"], row["name"], escape(f["summary"]))
        out.print(table)


@click.command(cls=Command)
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table (with every "
              "component's options).")
def plugins(name: str | None, as_json: bool) -> None:
    """List installed plugins, their versions and the components each registers; with NAME (a plugin
    or a component), each of its components' options: type, default, allowed values and help.

    \b
    Examples:
      difftk plugins
      difftk plugins ddim                # the options of the sampler ddim
      difftk plugins dpm_solver          # every component of the plugin dpm_solver, with options
      difftk plugins --json
      DIFFTK_LOAD_PLUGINS=ddpm difftk plugins
    """
    rows = _report()
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    if name is not None:
        _show_options(rows, name)
        return
    table = Table(title="difftk plugins", title_justify="left")
    for col in ("plugin", "version", "status", "components"):
        table.add_column(col, overflow="fold")
    for row in rows:
        steps = row["default_steps"]
        def label(kind: str, n: str, steps=steps) -> str:  # a sampler's default steps beside its name
            if kind != "sampler" or n not in steps:
                return n
            return f"{n} ({steps[n]})" if steps[n] == "adaptive" else f"{n} ({steps[n]} steps)"

        comps = "\n".join(f"[bold]{kind}[/]: {', '.join(label(kind, n) for n in names)}"
                           for kind, names in row["components"].items())
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
