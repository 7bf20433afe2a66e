"""Files written through `soundctm.io.atomic_write` get the mode any other new file would get."""

import os
import stat

from soundctm.io import write_json, write_text


def test_written_files_get_the_mode_the_umask_gives(tmp_path):
    old = os.umask(0o027)
    try:
        a = write_text(tmp_path / "a.md", "x")
        b = write_json(tmp_path / "b.json", {"x": 1})
        with open(tmp_path / "plain.txt", "w") as f:  # the reference: an ordinary new file
            f.write("x")
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert want == 0o640
    assert stat.S_IMODE(a.stat().st_mode) == want and stat.S_IMODE(b.stat().st_mode) == want
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
