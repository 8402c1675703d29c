"""scripts/mutation.py's list of equivalent mutants stays pinned to the mutants it names: mutmut
numbers the mutants of a function in order, so code added to a function moves every number after
it, and a stale line would leave some other, killable mutant out of the score."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("mutmut")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import mutation  # noqa: E402


@pytest.fixture(scope="module")
def changes() -> dict[str, list[str]]:
    return {name: lines for path in mutation.mutated_files() for name, lines in mutation.mutant_changes(path).items()}


def test_each_equivalent_mutant_is_the_change_its_line_quotes(changes):
    entries = mutation.read_equivalent(mutation.EQUIVALENT)
    assert entries, "no entries read"
    assert mutation.check_equivalent(entries, changes) == []


def test_a_renumbered_entry_is_found(changes):
    name = "mlp_xp.checkpoint.x_load_checkpoint__mutmut_16"
    assert changes[name] == ["- magic = f.read(9)", "+ magic = f.read(10)"]
    assert mutation.check_equivalent({name: "f.read(10)"}, changes) == []
    assert mutation.check_equivalent({name: "- magic = f.read(9)"}, changes) == []
    stale = mutation.check_equivalent({name.replace("_16", "_9"): "f.read(10)"}, changes)
    assert len(stale) == 1 and "not `f.read(10)`" in stale[0]
    assert mutation.check_equivalent({name + "0": "f.read(10)"}, changes) == [f"{name}0: no such mutant"]
    assert mutation.check_equivalent({name: "f.read(9)"}, changes) != []  # the removed line does not count


def test_a_line_without_its_code_is_refused(tmp_path):
    listing = tmp_path / "equivalent.txt"
    listing.write_text("# comment\n\nmlp_xp.a.x_f__mutmut_1  # reason only\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"equivalent.txt:3: expected"):
        mutation.read_equivalent(listing)
