"""Benchmark: a `fastapply run` with nothing changed against the first run, in one run.

    python benchmarks/bench_noop.py [--config fastapply.yaml]

Runs `fastapply run -q` three times on the same settings in a fresh temporary DAGSTER_HOME (and fresh
storage folders): the first builds everything, the second finds everything up to date, the third
(`--force`) rebuilds everything from the warm caches. Each command's own summary gives the time spent
after start-up ("Done: ... in X s"); the wall time of each process is printed beside it. Goal: the no-op
run's time <= 5 % of the first run's (start-up aside), and it launches no run.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.05


def fastapply(args: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds after start-up as the command reports it, wall seconds, output)."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("fastapply")), *args], env=env, capture_output=True, text=True
    )
    wall = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"fastapply {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    found = re.search(r"Done: .* in ([0-9.]+) s", done.stdout)
    if not found:
        raise SystemExit(f"no summary line in:\n{done.stdout}")
    return float(found.group(1)), wall, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", default=str(ROOT / "fastapply.yaml"))
    args = parser.parse_args()
    source = Path(args.config).resolve()
    work = Path(tempfile.mkdtemp(prefix="bench-noop-"))
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    for entry in data["sources"]:  # relative paths keep pointing where they did
        if "path" in entry and not Path(entry["path"]).is_absolute():
            entry["path"] = str((source.parent / entry["path"]).resolve())
    data["storage"] = {"cache_dir": str(work / "cache"), "artifacts_dir": str(work / "artifacts")}
    config = work / "fastapply.yaml"
    config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    env = {**os.environ, "DAGSTER_HOME": str(work / "home")}
    env.pop("FASTAPPLY_CONFIG", None)

    first, first_wall, _ = fastapply(["run", "-q", "--config", str(config)], env)
    noop, noop_wall, noop_out = fastapply(["run", "-q", "--config", str(config)], env)
    forced, forced_wall, _ = fastapply(["run", "-q", "--force", "--config", str(config)], env)
    launched = re.search(r"Done: (\d+) run\(s\)", noop_out).group(1)
    print(f"settings: {source}")
    print("| run | after start-up (s) | wall (s) | vs first |")
    print("|---|---:|---:|---:|")
    for name, seconds, wall in (
        ("first", first, first_wall),
        ("no-op (nothing changed)", noop, noop_wall),
        ("--force (warm caches)", forced, forced_wall),
    ):
        print(f"| {name} | {seconds:.2f} | {wall:.1f} | {seconds / first:.3f} |")
    ratio = noop / first
    print(
        f"\nno-op / first = {ratio:.3f} (goal <= {GOAL}); runs launched by the no-op: {launched}; "
        f"{'meets' if ratio <= GOAL and launched == '0' else 'MISSES'} the goal"
    )


if __name__ == "__main__":
    main()
