"""The sync agent watches a tree: a data root with a folder per night (and folders
below those), new folders included, with and without inotify.

The watcher is driven directly (no storage): what it queues in the journal is what the
uploaders would send. The nested-folder night against real storage with kill -9s is in
tests/test_sync_faults.py."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from sync_agent.journal import Journal
from sync_agent.night import night_in_name, object_key
from sync_agent.watcher import TreeWatcher
from tests.sync_faults import make_fits


@pytest.mark.parametrize("name, night", [
    ("2018-02-04", "2018-02-04"),
    ("20180204", "2018-02-04"),
    ("2018_02_04", "2018-02-04"),
    ("2018.02.04", "2018-02-04"),
    ("jsreding_930_20180203", "2018-02-03"),
    ("20200131_RAW", "2020-01-31"),
    ("RAW", None),
    ("0267", None),
    ("v20180203b", None),           # not a token of its own
    ("1201802031", None),           # digits run on: not a date
    ("2018-13-04", None),           # no 13th month
    ("2018-02-30", None),
    ("2018-0204", None),            # mixed separators
    ("1850-02-04", None),           # outside any plausible observing year
    ("2018-02-03_to_2018-02-04", None),   # two nights: say nothing
    ("2018-02-03_2018-02-03", "2018-02-03"),
])
def test_a_folder_name_gives_a_night_only_when_it_is_plainly_a_date(name, night):
    assert night_in_name(name) == night


def test_object_keys_keep_the_path_below_the_dated_folder():
    date_obs = "2018-02-04T02:00:00"    # the night of 2018-02-03 by the 16:00 UTC rule
    key = lambda rel, root="data": object_key("raw/", rel, root, date_obs, 0)  # noqa: E731
    assert key("20180203/0267_target.fits") == "raw/2018-02-03/0267_target.fits"
    assert key("2018-02-04/RAW/0267_target.fits") == "raw/2018-02-04/RAW/0267_target.fits"
    # the folder is the truth about its night, whatever DATE-OBS says
    assert key("2018-02-05/0001.fits") == "raw/2018-02-05/0001.fits"
    # the nearest dated folder wins, and the path below it stays
    assert key("2018/20180203/red/0001.fits") == "raw/2018-02-03/red/0001.fits"
    assert key("2018-02-03/2018-02-04/0001.fits") == "raw/2018-02-04/0001.fits"
    # no dated folder: DATE-OBS's night, and the whole path
    assert key("0267_target.fits") == "raw/2018-02-03/0267_target.fits"
    assert key("blue/0267_target.fits") == "raw/2018-02-03/blue/0267_target.fits"
    # a dated root names the night of everything in it
    assert key("0267_target.fits", root="20180210") == "raw/2018-02-10/0267_target.fits"
    assert key("RAW/0267_target.fits", root="2018-02-10") == "raw/2018-02-10/RAW/0267_target.fits"
    # two folders of one night never write the same object
    assert key("20180203/red/0001.fits") != key("20180203/blue/0001.fits")
    # no DATE-OBS and no dated folder: the file's time
    assert object_key("raw/", "x/0001.fits", "data", None, 1517680800) == "raw/2018-02-03/x/0001.fits"


def _watcher(root: Path, tmp_path: Path, use_inotify: bool) -> TreeWatcher:
    journal = Journal(tmp_path / f"state-{use_inotify}")
    return TreeWatcher(root, journal, settle=0.2, stale_after=30.0, rescan=3600.0, use_inotify=use_inotify)


def _queued(watcher: TreeWatcher) -> set:
    return {r["name"] for r in watcher.journal.rows("state='queued'")}


def _poll_until(watcher: TreeWatcher, want: set, timeout: float = 10.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        watcher.poll(0.1)
        if want <= _queued(watcher):
            return time.monotonic() - t0
    raise AssertionError(f"not queued after {timeout} s: {sorted(want - _queued(watcher))}")


@pytest.fixture(params=[True, False], ids=["inotify", "polling"])
def tree(request, tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    watcher = _watcher(root, tmp_path, request.param)
    watcher.scan()
    if request.param:
        assert watcher.inotify is not None, "inotify is available on Linux"
    yield root, watcher
    watcher.close()


def test_files_in_new_night_folders_and_below_are_queued(tree):
    root, watcher = tree
    (root / "0001_top.fits").write_bytes(b"")
    make_fits(root / "0001_top.fits", 1)
    (root / "20180203").mkdir()
    make_fits(root / "20180203" / "0267_target.fits", 2)     # written the moment after mkdir
    os.makedirs(root / "2018-02-04" / "RAW" / "deep")
    make_fits(root / "2018-02-04" / "RAW" / "deep" / "0001_bias.fits", 3)
    _poll_until(watcher, {"0001_top.fits", "20180203/0267_target.fits", "2018-02-04/RAW/deep/0001_bias.fits"})
    # a file added later to a folder that already exists
    make_fits(root / "20180203" / "0268_target.fits", 4)
    _poll_until(watcher, {"20180203/0268_target.fits"})


def test_a_folder_moved_in_whole_is_listed(tree, tmp_path):
    root, watcher = tree
    staging = tmp_path / "staging" / "20180205"
    (staging / "RAW").mkdir(parents=True)
    for i in range(3):
        make_fits(staging / "RAW" / f"{i:04d}.fits", i)
    os.rename(staging, root / "20180205")
    _poll_until(watcher, {f"20180205/RAW/{i:04d}.fits" for i in range(3)})


def test_hidden_folders_and_links_to_folders_are_not_followed(tree, tmp_path):
    root, watcher = tree
    (root / ".Trash").mkdir()
    make_fits(root / ".Trash" / "0001.fits", 1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    make_fits(elsewhere / "0002.fits", 2)
    (root / "latest").symlink_to(elsewhere, target_is_directory=True)
    (root / "20180203").mkdir()
    make_fits(root / "20180203" / "0003.fits", 3)
    _poll_until(watcher, {"20180203/0003.fits"})
    watcher.scan()
    assert _queued(watcher) == {"20180203/0003.fits"}


def test_a_removed_folder_is_forgotten_and_a_new_one_of_that_name_watched(tree):
    root, watcher = tree
    night = root / "20180203"
    night.mkdir()
    make_fits(night / "0001.fits", 1)
    _poll_until(watcher, {"20180203/0001.fits"})
    (night / "0001.fits").unlink()
    night.rmdir()
    watcher.poll(0.2)
    assert "20180203" not in watcher.folders
    night.mkdir()
    make_fits(night / "0002.fits", 2)
    _poll_until(watcher, {"20180203/0002.fits"})


def test_mkdir_then_write_at_once_is_never_missed(tree):
    """The race between a folder appearing and its watch being added: a writer that
    makes 40 folders and writes a file into each the instant it exists, while the
    watcher polls. Every file is queued, with no full re-scan to help (rescan is an
    hour away)."""
    root, watcher = tree
    want = set()

    def writer():
        for i in range(40):
            folder = root / f"2018-03-{1 + i % 28:02d}" / f"set{i}"
            folder.mkdir(parents=True, exist_ok=True)
            make_fits(folder / f"{i:04d}.fits", i, side=16)
            want.add(f"{folder.relative_to(root).as_posix()}/{i:04d}.fits")

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        watcher.poll(0.02)
    thread.join()
    took = _poll_until(watcher, want)
    print(f"\n  40 folders made and written at once: all queued {took:.2f} s after the writer ended")
    assert _queued(watcher) == want
