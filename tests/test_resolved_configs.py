"""Each packaged config still resolves to its stored dump (tests/resolved_configs.py): a config
edit meant to change nothing (a restatement removed, a piece shared) changes nothing, and one
that changes a run says so in the diff of the dumps."""

from __future__ import annotations

import pytest

from boxcaseg.configs import packaged_configs
from tests.resolved_configs import UPDATE, difference, dump_path, stale_dumps


@pytest.mark.parametrize("config", packaged_configs())
def test_the_packaged_config_resolves_to_its_stored_dump(config):
    diff = difference(config)
    assert diff is None, (
        f"{config} no longer resolves to {dump_path(config).name}. If the change is intended, "
        f"rewrite the dumps with `{UPDATE}` and commit them with it.\n{diff}"
    )


def test_every_dump_belongs_to_a_packaged_config():
    assert stale_dumps() == [], f"dumps of configs that are gone: remove them with `{UPDATE}`"
