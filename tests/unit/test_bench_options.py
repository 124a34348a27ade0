"""scripts/bench.py's counts: a run, a row count or a fixed-cost run count below one is refused by its
option's name before anything starts, rather than failing later on an empty list of timings."""

import pytest

from scripts import bench


@pytest.mark.parametrize("option", ["--rows", "--variant-rows", "--runs", "--fixed-cost-runs"])
def test_a_count_below_one_is_refused_by_name(option, capsys):
    with pytest.raises(SystemExit) as exited:
        bench.main([option, "0"])
    assert exited.value.code == 2
    assert f"{option} must be at least 1, not 0" in capsys.readouterr().err
