"""Desktop naming patterns (composer/naming.py; DESIGN.md "Naming patterns")."""

import pytest

from composer.naming import MAX_NAME_LENGTH, NamingError, Pattern, names, parse


def test_fixed_width_token_pads_numbers():
    assert names("VDI-{n:fixed=3}", 3) == ["VDI-001", "VDI-002", "VDI-003"]


def test_plain_token_does_not_pad():
    got = names("LAB-{n}", 11)
    assert got[:3] == ["LAB-1", "LAB-2", "LAB-3"]
    assert got[-2:] == ["LAB-10", "LAB-11"]


def test_pattern_without_token_appends_the_number():
    assert names("KIOSK", 3) == ["KIOSK1", "KIOSK2", "KIOSK3"]


def test_token_may_sit_between_prefix_and_suffix():
    assert names("LAB-{n:fixed=2}-X", 2) == ["LAB-01-X", "LAB-02-X"]


def test_parse_returns_prefix_suffix_and_width():
    assert parse("VDI-{n:fixed=3}") == Pattern("VDI-", "", 3)
    assert parse("LAB-{n}-X") == Pattern("LAB-", "-X", 0)
    assert parse("KIOSK") == Pattern("KIOSK", "", 0)


def test_surrounding_whitespace_is_ignored():
    assert names("  VDI-{n}  ", 1) == ["VDI-1"]


def test_taken_names_are_skipped():
    assert names("VDI-{n:fixed=3}", 3, taken={"VDI-001", "VDI-003"}) == [
        "VDI-002",
        "VDI-004",
        "VDI-005",
    ]


def test_taken_names_are_compared_case_insensitively():
    # Windows computer names are case-insensitive: vdi-001 blocks VDI-001.
    assert names("VDI-{n:fixed=3}", 2, taken=["vdi-001", "Vdi-002"]) == ["VDI-003", "VDI-004"]


def test_taken_names_from_other_patterns_do_not_matter():
    assert names("VDI-{n:fixed=3}", 1, taken={"VDI-1", "LAB-001"}) == ["VDI-001"]


def test_result_never_contains_a_taken_name_or_a_duplicate():
    taken = {f"VDI-{i:03d}" for i in range(1, 50, 3)}
    got = names("VDI-{n:fixed=3}", 40, taken)
    assert len(got) == len(set(got)) == 40
    assert not set(got) & taken


def test_name_of_exactly_fifteen_characters_is_allowed():
    # 11-character prefix + 4 digits = 15.
    assert names("ABCDEFGHIJK{n:fixed=4}", 1) == ["ABCDEFGHIJK0001"]


def test_name_longer_than_fifteen_characters_raises():
    # 14-character prefix: numbers 1..9 give 15 characters, the 10th name has 16.
    pattern = "ABCDEFGHIJKLM-{n}"
    assert len(names(pattern, 9)[-1]) == MAX_NAME_LENGTH == 15
    with pytest.raises(NamingError, match="15"):
        names(pattern, 10)


def test_fixed_width_pattern_too_long_from_the_first_name_raises():
    # 12 + 4 = 16 characters for every name.
    with pytest.raises(NamingError, match="15"):
        names("ABCDEFGHIJKL{n:fixed=4}", 1)


def test_skipping_taken_names_can_push_past_fifteen_characters():
    # Names 1..9 are taken, so the first free one is the 16-character 10th.
    pattern = "ABCDEFGHIJKLM-{n}"
    taken = {f"ABCDEFGHIJKLM-{i}" for i in range(1, 10)}
    with pytest.raises(NamingError, match="15"):
        names(pattern, 1, taken)


def test_fixed_width_runs_out_of_numbers():
    # fixed=1 allows only 1..9.
    assert names("LAB-{n:fixed=1}", 9)[-1] == "LAB-9"
    with pytest.raises(NamingError, match="only 9 numbers"):
        names("LAB-{n:fixed=1}", 10)


def test_taken_names_count_against_fixed_width_numbers():
    # 9 numbers, one taken: 8 left.
    assert len(names("LAB-{n:fixed=1}", 8, taken={"LAB-5"})) == 8
    with pytest.raises(NamingError, match="only 9 numbers"):
        names("LAB-{n:fixed=1}", 9, taken={"LAB-5"})


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "   ",
        "VDI-{n}-{n}",
        "VDI-{n}{n:fixed=2}",
        "VDI-{x}",
        "VDI-{n:fixed=}",
        "VDI-{n:width=3}",
        "VDI-{n",
        "VDI-n}",
        "VDI {n}",
        "VDI_{n}",
        "VDI-{n}.corp",
        "VDÏ-{n}",
        "-VDI{n}",
        "VDI-{n}-",
        "{n}",
        "{n:fixed=3}",
        "VDI-{n:fixed=0}",
        "V{n:fixed=15}",
    ],
)
def test_invalid_pattern_is_rejected(pattern):
    with pytest.raises(NamingError):
        parse(pattern)
    with pytest.raises(NamingError):
        names(pattern, 1)


def test_invalid_pattern_messages_say_what_is_wrong():
    with pytest.raises(NamingError, match="at most once"):
        parse("A{n}B{n}")
    with pytest.raises(NamingError, match="Unknown token"):
        parse("VDI-{x}")
    with pytest.raises(NamingError, match="letters, digits and hyphens"):
        parse("VDI_{n}")
    with pytest.raises(NamingError, match="hyphen"):
        parse("-VDI-{n}")
    with pytest.raises(NamingError, match="empty"):
        parse("")


def test_widest_fixed_width_is_fourteen():
    # One prefix character + 14 digits = 15 characters.
    assert parse("V{n:fixed=14}").width == 14
    assert names("V{n:fixed=14}", 1) == ["V00000000000001"]


def test_prefix_may_end_and_suffix_may_start_with_a_hyphen():
    assert names("VDI-{n}-A", 1) == ["VDI-1-A"]
    assert names("VDI-", 1) == ["VDI-1"]


def test_newline_inside_pattern_is_rejected():
    with pytest.raises(NamingError):
        parse("VDI\n{n}")


def test_zero_names_asked_gives_an_empty_list():
    assert names("VDI-{n:fixed=3}", 0) == []
    assert names("VDI-{n}", 0) == []
