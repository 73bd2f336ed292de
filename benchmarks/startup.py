"""How long `importer --help` takes to start, against `python -c "import click"`, in one run.

    .venv/bin/python benchmarks/startup.py [N]

Runs each command N times (default 30), alternating so that both see the same machine, and prints
each one's median wall time and the ratio. hyperfine would do the same; it is not installed here.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

COMMANDS: dict[str, list[str]] = {
    "python -c 'import click'": [sys.executable, "-c", "import click"],
    "importer --help": [sys.executable, "-m", "importer", "--help"],
    "importer members --help": [sys.executable, "-m", "importer", "members", "--help"],
}


def main() -> None:
    """Time the commands alternately and print their medians."""
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(runs):
        for name, command in COMMANDS.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - started)
    floor = statistics.median(times["python -c 'import click'"])
    print(f"{runs} runs each, alternating; median wall time")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:<28} {median * 1000:7.1f} ms  {median / floor:5.2f}x")


if __name__ == "__main__":
    main()
