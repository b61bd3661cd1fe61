"""Group manifests: the user's table of specimen regions is read line by line, every mistake named with its line;
the raw folder's own groups.csv reads back as written."""

import pytest

from ncseg.data.groups import read_group_table, read_groups, write_groups
from ncseg.data.layout import GROUPS


def _read(tmp_path, text: str, bom: bool = False):
    """(groups, problems, warnings) of a manifest holding `text` (group column `slice`) for images a and b."""
    path = tmp_path / "slices.csv"
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode())
    return read_group_table(path, "slice", ["a", "b"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,slice\na,s1\nb,\n", "line 3: image 'b' has an empty 'slice'"),
        ("name,slice\na,s1\n\n\nb,\n", "line 5: image 'b' has an empty 'slice'"),
        ("name,slice\na,s1\nb,s2\nb,s3\n", "line 4: image 'b' is in 's2' and in 's3' (line 3)"),
        ("name,slice\na,s1\n,s2\nb,s2\n", "line 3: group 's2' for an empty 'name'"),
        ("name,group\na,s1\nb,s2\n", ": group manifest needs columns 'name' and 'slice' (found: name, group)"),
        ("", ": group manifest needs columns 'name' and 'slice' (found: no header)"),
        ("name,slice\na,s1\n", ": no group for image 'b' (no row names it)"),
        ("name,slice\n", ": no group for image 'a' (no row names it)"),
    ],
)
def test_group_manifest_mistakes_are_named_with_their_file_and_line(tmp_path, text, message):
    _, problems, _ = _read(tmp_path, text)
    assert any(p.startswith(str(tmp_path / "slices.csv")) and message in p for p in problems), problems


def test_a_group_manifest_with_spaced_header_blank_rows_and_identical_repeats_reads_cleanly(tmp_path):
    assert _read(tmp_path, "name, slice\na, s1\n,\nb,s2\nb,s2\n", bom=True) == ({"a": "s1", "b": "s2"}, [], [])


def test_rows_for_images_not_imported_are_a_warning_naming_their_lines(tmp_path):
    groups, problems, warnings = _read(tmp_path, "name,slice\na,s1\nb,s1\nb,s1\nzz,s9\n", bom=True)
    assert (groups, problems) == ({"a": "s1", "b": "s1", "zz": "s9"}, [])
    assert warnings == [f"{tmp_path / 'slices.csv'}: 1 row(s) name images that are not imported: 'zz' (line 5)"]


def test_an_unreadable_group_manifest_is_one_problem_naming_it(tmp_path):
    absent = tmp_path / "absent.csv"
    assert read_group_table(absent, "slice", ["a"]) == (
        {},
        [f"{absent}: cannot read group manifest (No such file or directory)"],
        [],
    )


def test_the_raw_folders_groups_read_back_as_written_and_none_without_a_manifest(tmp_path):
    assert read_groups(tmp_path) == {}
    write_groups(tmp_path, {"r0": "slice 1", "r1": "slice 1", "new": "new"})
    assert (tmp_path / GROUPS).read_text().splitlines() == ["name,group", "r0,slice 1", "r1,slice 1", "new,new"]
    assert read_groups(tmp_path) == {"r0": "slice 1", "r1": "slice 1", "new": "new"}
