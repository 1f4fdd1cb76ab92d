"""bench.ab's comparison: medians per side and each pair's change, whichever side ran first."""

from __future__ import annotations

import pytest

from bench import costs
from bench.ab import Run, main, parse_env, run_from, summary


def _run(side: str, pair: int, ratio: float, rate: float = 1000.0) -> Run:
    return Run(side, pair, ratio, rate, machine_us=1000.0, web_us=700.0, errors=0)


def test_summary_compares_each_pair_whatever_ran_first() -> None:
    runs = [
        _run("A", 1, 0.20),
        _run("B", 1, 0.22),
        _run("B", 2, 0.18),  # the second pair runs B first
        _run("A", 2, 0.20),
        _run("A", 3, 0.25),
        _run("B", 3, 0.30),
    ]
    lines = summary(runs)
    assert lines[0].startswith("A: median ratio 0.200,")
    assert lines[1].startswith("B: median ratio 0.220,")
    assert lines[2] == "B against A, pair by pair: +10%, -10%, +20%; median +10%; B ahead in 2 of 3"


def test_a_pair_missing_a_side_is_left_out_of_the_changes() -> None:
    lines = summary([_run("A", 1, 0.2), _run("B", 1, 0.1), _run("A", 2, 0.3)])
    assert lines[-1].endswith("B ahead in 0 of 1")


def test_run_from_reads_what_costs_writes() -> None:
    measured = {
        "hello": {"rate": 5000.0, "p99_ms": 9.0, "errors": 1, "us": {"web": 250.0, "all": 350.0}},
        "scenario": {
            "rate": 1400.0,
            "p99_ms": 50.0,
            "errors": 2,
            "us": {"web": 900.0, "mail worker": 170.0, "all": 1300.0},
        },
        "ratio": 0.28,
    }
    run = run_from("B", 2, measured)
    assert (run.ratio, run.rate, run.machine_us, run.web_us, run.errors) == (
        0.28,
        1400.0,
        1300.0,
        900.0,
        3,
    )


def test_settings_need_a_name_and_an_equals_sign() -> None:
    assert parse_env(["PGOPTIONS=-c synchronous_commit=off", "EMPTY="]) == {
        "PGOPTIONS": "-c synchronous_commit=off",
        "EMPTY": "",
    }
    for bad in ("NOVALUE", "=value"):
        with pytest.raises(SystemExit):
            parse_env([bad])


@pytest.mark.parametrize(
    "options", [["--scenario", "mixed"], ["--scenario=mixed"], ["--pairs", "0"]]
)
def test_refuses_what_it_cannot_compare_before_running_anything(
    options: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(options)
    assert exit_info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_costs_refuses_json_for_the_mixed_run(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The mixed run has no ratio to write: asked for one, costs says so before starting."""
    with pytest.raises(SystemExit) as exit_info:
        costs.main(["--scenario", "mixed", "--json", str(tmp_path / "figures.json")])
    assert exit_info.value.code == 2
    assert "--json is for sign and confirm" in capsys.readouterr().err
    assert not (tmp_path / "figures.json").exists()
