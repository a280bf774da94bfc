"""``python -m benchmarks <command> [args]``: see :mod:`benchmarks` for the commands."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {"quality": "benchmarks.quality", "speed": "benchmarks.speed", "search": "benchmarks.search",
            "cache": "benchmarks.cache_reuse", "startup": "benchmarks.startup", "zero-shot": "benchmarks.zero_shot",
            "synthetic": "benchmarks.synthetic", "first-stage": "benchmarks.first_stage"}


def main(argv: list[str]) -> None:
    usage = ("usage: python -m benchmarks {" + ",".join([*COMMANDS, "probe"]) + "} [args]\n"
             "       python -m benchmarks probe --list | NAME [args]")
    if not argv or argv[0] in ("-h", "--help"):
        print(usage + "\n\n" + (importlib.import_module("benchmarks").__doc__ or ""))
        return
    command, rest = argv[0], argv[1:]
    if command == "probe":
        from benchmarks.probes import PROBES, probe_module

        if not rest or rest[0] in ("--list", "-h", "--help"):
            for name in PROBES:
                print(f"{name:<16} {(probe_module(name).__doc__ or '').splitlines()[0]}")
            return
        probe_module(rest[0]).main(rest[1:])
        return
    if command not in COMMANDS:
        raise SystemExit(f"unknown command {command!r}\n{usage}")
    importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    main(sys.argv[1:])
