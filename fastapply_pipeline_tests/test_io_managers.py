"""The IO managers write atomically: a full disk (or a kill) mid-write leaves the last good value in place.

The disk is a real 512 KiB tmpfs where the test may mount one (root in a container or a VM); elsewhere
a write hook fills the "disk": the writer writes half of its bytes and then raises ENOSPC, as a full
disk does. Both drive the real IO managers through real Dagster runs.
"""

import errno
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest

from fastapply_pipeline.defs import resources
from fastapply_pipeline.defs.resources import ParquetIOManager, PickleIOManager

pytestmark = pytest.mark.slow  # every test here is slow (see docs/testing.md)


def _mount_tmpfs(folder: Path) -> bool:
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    mount = ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)]
    return subprocess.run(mount, capture_output=True).returncode == 0


def _fill_to_the_brim(folder: Path) -> None:
    """Fill the tmpfs, then free 8 KiB: small writes still fit, a table or a pickle does not."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as err:
            assert err.errno == errno.ENOSPC
    os.truncate(filler, max(filler.stat().st_size - 8192, 0))


def _half_then_enospc(path) -> None:
    Path(str(path)).write_bytes(b"PAR1 half a file")  # what a full disk leaves: a torn file
    raise OSError(errno.ENOSPC, "No space left on device (write hook)")


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """(folder, fill): once fill() is called, writing a table or a pickle there fails with ENOSPC."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = _mount_tmpfs(folder)

    def fill() -> None:
        if mounted:
            _fill_to_the_brim(folder)
            return
        # No mount allowed here: the writers themselves hit a "full disk" after writing half a file.
        monkeypatch.setattr(pl.DataFrame, "write_parquet", lambda self, path, **kw: _half_then_enospc(path))
        monkeypatch.setattr(resources, "pickle", _FullDiskPickle())

    yield folder, fill
    if mounted:
        subprocess.run(["umount", str(folder)], check=False)


class _FullDiskPickle:
    HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL
    load = staticmethod(pickle.load)

    @staticmethod
    def dump(obj, handle, protocol) -> None:
        handle.write(b"half a pickle")
        raise OSError(errno.ENOSPC, "No space left on device (write hook)")


def big_frame(rows: int, seed: int) -> pl.DataFrame:
    """Incompressible text: parquet cannot shrink it below the disk's free space."""
    rng = np.random.default_rng(seed)
    return pl.DataFrame({"text": [rng.bytes(512).hex() for _ in range(rows)]})


def test_a_table_write_on_a_full_disk_keeps_the_last_good_table(small_disk):
    folder, fill = small_disk
    value = {"frame": big_frame(20, 0)}

    @dg.asset(io_manager_key="parquet_io_manager")
    def table() -> pl.DataFrame:
        return value["frame"]

    resources = {"parquet_io_manager": ParquetIOManager(base_dir=str(folder / "tables"))}
    with dg.instance_for_test() as instance:
        assert dg.materialize([table], resources=resources, instance=instance).success
        path = folder / "tables" / "table.parquet"
        good = pl.read_parquet(path)
        assert good.equals(value["frame"])

        fill()
        value["frame"] = big_frame(400, 1)  # ~400 KiB: more than the disk has left
        result = dg.materialize([table], resources=resources, instance=instance, raise_on_error=False)
        assert not result.success
        assert pl.read_parquet(path).equals(good)  # the last good table, whole
        assert [p.name for p in path.parent.iterdir()] == ["table.parquet"]  # no temp file left


def test_a_pickled_value_write_on_a_full_disk_keeps_the_last_good_value(small_disk):
    folder, fill = small_disk
    value = {"payload": b"small"}

    @dg.asset
    def snapshot() -> bytes:
        return value["payload"]

    resources = {"io_manager": PickleIOManager(base_dir=str(folder / "objects"))}
    with dg.instance_for_test() as instance:
        assert dg.materialize([snapshot], resources=resources, instance=instance).success
        fill()
        value["payload"] = np.random.default_rng(2).bytes(400 * 1024)
        result = dg.materialize([snapshot], resources=resources, instance=instance, raise_on_error=False)
        assert not result.success

        @dg.asset(deps=[snapshot])
        def reader(snapshot: bytes) -> None:
            assert snapshot == b"small"

        reread = dg.materialize(
            [snapshot.to_source_asset(), reader], resources=resources, instance=instance, selection=[reader]
        )
        assert reread.success
        assert sorted(p.name for p in (folder / "objects").iterdir()) == ["snapshot"]
