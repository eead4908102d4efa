"""A stage's job state: a failure inside ``reporting`` is recorded, and says so on the error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cass_hpc import jobstate


def test_a_failure_after_the_stage_began_is_recorded_and_marked_a_refusal_is_not(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError) as failed, jobstate.reporting(tmp_path):
        raise ValueError("loss is NaN at step 3")
    state = json.loads((tmp_path / jobstate.STATE_FILE).read_text())
    assert state["state"] == "failed" and state["error"] == "ValueError: loss is NaN at step 3"
    assert jobstate.recorded(failed.value)  # run.py keeps the run's log
    assert str(failed.value) == "loss is NaN at step 3"  # the one-line message is unchanged
    assert not jobstate.recorded(ValueError("label_fraction must be in (0, 1], got 1.5"))
