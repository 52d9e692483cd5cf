"""Phone numbers and identity documents: what is accepted, in which form it is kept, what is shown."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tongka.account.identity import (
    InvalidDocument,
    InvalidNumber,
    hkid_check_digit,
    mask,
    mask_name,
    normalise_document,
    parse_number,
)

# --- phone numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+85251011007", "+85251011007"),
        ("+852 5101 1007", "+85251011007"),
        ("+852-5101-1007", "+85251011007"),
        ("(+852) 5101 1007", "+85251011007"),
        ("+86 139 0001 2013", "+8613900012013"),
        ("+86 13900012013", "+8613900012013"),
        # national forms: 8 digits are Hong Kong, 11 digits mainland
        ("51011007", "+85251011007"),
        ("5101 1007", "+85251011007"),
        ("61234567", "+85261234567"),
        ("13900012013", "+8613900012013"),
        ("139-0001-2013", "+8613900012013"),
        # international prefix 00 instead of +
        ("00852 5101 1007", "+85251011007"),
        ("0085251011007", "+85251011007"),
        ("008613900012013", "+8613900012013"),
        ("0086 139 0001 2013", "+8613900012013"),
    ],
)
def test_parse_number_accepts_mobiles_and_returns_e164(text: str, expected: str) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "+852 2345 6789",  # Hong Kong landline
        "+852 3123 4567",  # Hong Kong landline
        "23456789",  # the same, national form
        "+852 800 123 456",  # Hong Kong toll-free
        "+86 10 6552 9988",  # Beijing landline
        "01065529988",  # the same, national form (11 digits, but not a mobile)
        "+86 400 123 4567",  # mainland service number
        "+44 7700 900123",  # UK mobile
        "0044 7700 900123",
        "+853 6612 3456",  # Macau mobile
        "+1 650 253 0000",
        "85251011007",  # country code without + or 00
        "+852 5101 10070",  # one digit too many
        "5101100",  # 7 digits
        "510110070",  # 9 digits: neither national form
        "",
        "   ",
        "not a number",
    ],
)
def test_parse_number_refuses_landlines_foreign_and_malformed(text: str) -> None:
    with pytest.raises(InvalidNumber) as caught:
        parse_number(text)
    assert (caught.value.status, caught.value.code) == (422, "invalid_number")


@pytest.mark.parametrize(
    ("text", "region", "expected"),
    [
        ("+852 5101 1007", "HK", "+85251011007"),
        ("51011007", "HK", "+85251011007"),
        ("+86 139 0001 2013", "CN", "+8613900012013"),
        ("13900012013", "CN", "+8613900012013"),
    ],
)
def test_parse_number_in_its_own_region(text: str, region: str, expected: str) -> None:
    assert parse_number(text, region) == expected


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("+852 5101 1007", "CN"),
        ("51011007", "CN"),
        ("+86 139 0001 2013", "HK"),
        ("13900012013", "HK"),
        ("+44 7700 900123", "HK"),
    ],
)
def test_parse_number_refuses_a_number_of_the_other_region(text: str, region: str) -> None:
    with pytest.raises(InvalidNumber):
        parse_number(text, region)


# --- Hong Kong identity card -----------------------------------------------------------------
# Check digits worked by hand: weights 9..2 over (36 for a missing second letter, A=10..Z=35, digits),
# check = (11 - sum mod 11) mod 11, 10 written "A".
#   A123456: 36*9+10*8+1*7+2*6+3*5+4*4+5*3+6*2 = 481; 481 mod 11 = 8  -> 3
#   AB987654: 10*9+11*8+9*7+8*6+7*5+6*4+5*3+4*2 = 371; 371 mod 11 = 8 -> 3
#   G123456: 36*9+16*8+1*7+2*6+3*5+4*4+5*3+6*2 = 529; 529 mod 11 = 1  -> 10 -> A
#   A100009: 36*9+10*8+1*7+9*2 = 429; 429 mod 11 = 0                  -> 0


@pytest.mark.parametrize(
    ("prefix", "digits", "check"),
    [("A", "123456", "3"), ("AB", "987654", "3"), ("G", "123456", "A"), ("A", "100009", "0")],
)
def test_hkid_check_digit(prefix: str, digits: str, check: str) -> None:
    assert hkid_check_digit(prefix, digits) == check


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A123456(3)", "A1234563"),
        ("A1234563", "A1234563"),
        ("a123456(3)", "A1234563"),
        ("A 123456 (3)", "A1234563"),
        ("AB987654(3)", "AB9876543"),
        ("G123456(A)", "G123456A"),
        ("g123456a", "G123456A"),
        ("A100009(0)", "A1000090"),
    ],
)
def test_hkid_accepted_with_or_without_parentheses(text: str, expected: str) -> None:
    assert normalise_document("hkid", text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "A123456(4)",  # wrong check digit
        "A123456(0)",
        "A1234564",
        "AB987654(4)",
        "G123456(0)",
        "A123456",  # no check digit
        "A12345(6)",  # five digits
        "ABC123456(3)",  # three letters
        "1234567(3)",  # no letter
        "",
    ],
)
def test_hkid_refused(text: str) -> None:
    with pytest.raises(InvalidDocument) as caught:
        normalise_document("hkid", text)
    assert (caught.value.status, caught.value.code) == (422, "invalid_document")


# --- mainland resident identity card (python-stdnum cn.ric) ---------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("11010519491231002X", "11010519491231002X"),
        ("11010519491231002x", "11010519491231002X"),
        ("110105 19491231 002X", "11010519491231002X"),
        ("360426199101010071", "360426199101010071"),
    ],
)
def test_cn_resident_id_accepted(text: str, expected: str) -> None:
    assert normalise_document("cn_resident_id", text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "110105194912310021",  # checksum should be X
        "360426199101010072",  # checksum should be 1
        "11010519491231002",  # 17 characters
        "A1234563",  # an HKID is not a resident ID
        "",
    ],
)
def test_cn_resident_id_refused(text: str) -> None:
    with pytest.raises(InvalidDocument):
        normalise_document("cn_resident_id", text)


# --- passports: form only --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("E12345678", "E12345678"), ("e1234-5678", "E12345678"), ("K 0123 4567", "K01234567")],
)
def test_passport_form_accepted(text: str, expected: str) -> None:
    assert normalise_document("passport", text) == expected


@pytest.mark.parametrize("text", ["E12#4567", "E123", "E" * 21, "护照12345", ""])
def test_passport_form_refused(text: str) -> None:
    with pytest.raises(InvalidDocument):
        normalise_document("passport", text)


# --- the mainland's exit-entry permit for Hong Kong and Macao: C and eight characters ----------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("C12345678", "C12345678"), ("c1234 5678", "C12345678"), ("CA1234567", "CA1234567")],
)
def test_exit_permit_accepted(text: str, expected: str) -> None:
    assert normalise_document("cn_exit_permit", text) == expected


# W: the booklet, not issued since 2014; a passport's number; too short; too long.
@pytest.mark.parametrize("text", ["W12345678", "E12345678", "C1234567", "C123456789", "CAB234567"])
def test_exit_permit_refused(text: str) -> None:
    with pytest.raises(InvalidDocument):
        normalise_document("cn_exit_permit", text)


def test_unknown_document_type_refused() -> None:
    with pytest.raises(InvalidDocument):
        normalise_document("driving_licence", "A123456(3)")


# --- masking ---------------------------------------------------------------------------------


def test_mask_of_documents_shows_only_the_ends() -> None:
    assert mask("11010519491231002X") == "11**************2X"
    # An HKID keeps its letter and check digit only: its six digits stay hidden.
    assert mask("A1234563") == "A******3"
    assert mask("E12345678") == "E*******8"


@pytest.mark.parametrize("text", ["A", "AB", "ABC", "ABCD"])
def test_mask_of_short_values_hides_everything(text: str) -> None:
    assert mask(text) == "*" * len(text)


@given(st.text(alphabet=string.ascii_uppercase + string.digits, min_size=1, max_size=40))
def test_mask_never_reveals_the_value(text: str) -> None:
    masked = mask(text)
    assert masked != text
    assert len(masked) == len(text)
    shown = len(masked) - masked.count("*")
    assert shown <= 4 and shown < len(text) / 2 + 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Chan Tai Man", "C*** T** M**"),
        ("陈大文", "陈**"),
        ("歐陽小明", "歐***"),
        ("Suharto", "S******"),
    ],
)
def test_mask_name_keeps_the_first_letter_of_each_part(name: str, expected: str) -> None:
    assert mask_name(name) == expected


@given(
    st.lists(
        st.text(alphabet=string.ascii_letters + "陈李王张", min_size=2, max_size=12),
        min_size=1,
        max_size=4,
    )
)
def test_mask_name_never_reveals_a_name_of_parts_of_two_letters_or_more(parts: list[str]) -> None:
    name = " ".join(parts)
    masked = mask_name(name)
    assert masked != name
    for part in parts:
        assert part not in masked.split()


@pytest.mark.parametrize("name", ["王 芳", "A B", "陈"])
def test_mask_name_hides_names_made_of_one_letter_parts(name: str) -> None:
    assert mask_name(name) != name
