"""``docs/configuration.md`` is what ``python -m agentgym.ops.configdoc`` writes from the settings classes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from agentgym.ops.configdoc import DOC_PATH, SECTIONS, main, render, variable_name
from agentgym.ops.exceptions import ConfigDocError
from agentgym.producers.settings import SharedSettings


def test_the_reference_is_what_the_generator_writes() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md is out of date: run python -m agentgym.ops.configdoc"
    )


def test_check_mode_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "configuration.md"
    stale.write_text(render().replace("| `AGENTGYM_HOME` |", "| `AGENTGYM_HOME_OLD` |"), encoding="utf-8")
    assert main(["--check", "--output", str(stale)]) == 1
    assert main(["--output", str(stale)]) == 0
    assert main(["--check", "--output", str(stale)]) == 0


def test_every_field_of_every_class_has_its_row_once() -> None:
    text = render()
    for _title, path in SECTIONS:
        module, _, name = path.partition(":")
        cls = getattr(__import__(module, fromlist=[name]), name)
        for field_name, field in cls.model_fields.items():
            env = variable_name(cls, field_name, field)
            assert text.count(f"| `{env}` |") == 1, f"{env} ({path}.{field_name}) has no single row"


class _Undocumented(SharedSettings):
    """A class with a field that has no description."""

    mystery: int = 3


class _ComputedDefault(SharedSettings):
    """A class whose computed default is not documented."""

    where: list[str] = Field(default_factory=list, description="somewhere")


@pytest.mark.parametrize(
    ("cls", "message"),
    [(_Undocumented, r"_Undocumented\.mystery has no description"), (_ComputedDefault, r"_ComputedDefault\.where: .*doc_default")],
)
def test_an_undocumentable_field_is_refused_by_name(cls: type[SharedSettings], message: str) -> None:
    with pytest.raises(ConfigDocError, match=message):
        render((("Test", cls),))
