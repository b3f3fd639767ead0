"""Build a real multi-repository corpus offline, from the package registries this machine reaches.

    python benchmarks/build_corpus.py [--out .fastapply/corpus]
    fastapply run --config benchmarks/corpus.yaml        # then the pipeline on it (see corpus.yaml)

Each package below becomes one git repository: its older release's source (the PyPI sdist, or the npm
tarball) as the first commit, its newer release as the second, so `git_history` has real history. The
sources carry their licenses (LICENSE files in the archives). Nothing of it is committed to this
project: only this script and benchmarks/corpus.yaml, which lists the repositories as `path:` sources.
"""

import argparse
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (registry, package, older, newer): Python and JavaScript/TypeScript sources under permissive licenses.
PACKAGES = [
    ("pypi", "click", "8.1.7", "8.1.8"),
    ("pypi", "attrs", "23.2.0", "24.2.0"),
    ("pypi", "itsdangerous", "2.1.2", "2.2.0"),
    ("pypi", "python-dotenv", "1.0.0", "1.0.1"),
    ("pypi", "tomli", "2.0.1", "2.0.2"),
    ("npm", "commander", "11.1.0", "12.0.0"),
    ("npm", "ky", "1.2.0", "1.3.0"),
    ("npm", "zod", "3.22.4", "3.23.8"),
    ("pypi", "packaging", "23.2", "24.0"),
    ("pypi", "pluggy", "1.4.0", "1.5.0"),
    ("pypi", "cachetools", "5.3.3", "5.4.0"),
    ("pypi", "tenacity", "8.2.3", "8.3.0"),
    ("pypi", "humanize", "4.9.0", "4.10.0"),
    ("pypi", "markupsafe", "2.1.4", "2.1.5"),
    ("npm", "semver", "7.6.0", "7.6.3"),
    ("npm", "chalk", "5.3.0", "5.4.1"),
    ("npm", "dotenv", "16.4.4", "16.4.5"),
    ("npm", "nanoid", "5.0.6", "5.0.7"),
]


def fetch(registry: str, package: str, version: str, into: Path) -> Path:
    """The package's source tree of one version, unpacked under `into`."""
    into.mkdir(parents=True)
    if registry == "pypi":
        # The sdist (pip builds nothing with --no-build-isolation for setuptools sdists); where that fails
        # (a hatch or flit sdist needs its backend), the wheel: the same sources, the license in dist-info.
        download = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(into)]
        sdist = subprocess.run(
            [*download, "--no-binary", ":all:", "--no-build-isolation", f"{package}=={version}"],
            capture_output=True,
        )
        if sdist.returncode:
            for leftover in into.iterdir():
                leftover.unlink()
            subprocess.run(
                [*download, "--only-binary", ":all:", f"{package}=={version}"],
                check=True,
                capture_output=True,
            )
            wheel = next(into.glob("*.whl"))
            top = into / "src" / f"{package}-{version}"
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(top)
            for license_file in top.glob("*.dist-info/**/LICENSE*"):
                shutil.copy(license_file, top / "LICENSE")
            for info in top.glob("*.dist-info"):
                shutil.rmtree(info)
            return top
    else:
        subprocess.run(
            ["npm", "pack", "--silent", f"{package}@{version}"], cwd=into, check=True, capture_output=True
        )
    archive = next(p for p in into.iterdir() if p.name.endswith((".tar.gz", ".tgz")))
    with tarfile.open(archive) as tar:
        tar.extractall(into / "src", filter="data")
    (top,) = list((into / "src").iterdir())  # sdists and npm tarballs hold one top folder
    return top


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def build(registry: str, package: str, older: str, newer: str, out: Path, work: Path) -> Path:
    repo = out / package
    built = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD~1"], capture_output=True)
    if (repo / ".git").is_dir() and built.returncode == 0:
        return repo  # built before (both commits)
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    for version in (older, newer):
        tree = fetch(registry, package, version, work / f"{package}-{version}")
        for child in repo.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        shutil.copytree(tree, repo, dirs_exist_ok=True)
        git(repo, "add", "-A")
        git(
            repo,
            "-c",
            "user.name=corpus",
            "-c",
            "user.email=corpus@localhost",
            "commit",
            "-q",
            "-m",
            f"{package} {version}",
        )
    return repo


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / ".fastapply" / "corpus")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for registry, package, older, newer in PACKAGES:
            try:
                repo = build(registry, package, older, newer, args.out, Path(tmp))
            except subprocess.CalledProcessError as err:
                print(f"{package}: failed: {err.stderr.decode(errors='replace').strip()[-300:]}")
                continue
            files = sum(1 for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts)
            print(f"{package}: {repo} ({files} files, commits {older} -> {newer})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
