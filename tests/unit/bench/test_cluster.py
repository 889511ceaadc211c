"""``bench.cluster``'s options: what it refuses before starting anything."""

from __future__ import annotations

import pytest

from bench import cluster


@pytest.mark.parametrize(
    "argv",
    [["--cameras", "0"], ["--frames", "-1"], ["--repeat", "0"], ["--servers", "0"], ["--servers", "1", "17"]],
)
def test_bad_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cluster.main(argv)
    assert info.value.code == 2 and "must be >= 1" in capsys.readouterr().err
