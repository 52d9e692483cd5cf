"""What a typed value is read as: numbers in E.164, hosts in ASCII, look-alikes never ours."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tongka.trust import service
from tongka.trust.service import NotReadable, Reading, read


@pytest.mark.parametrize(
    "typed",
    ["+852 3000 1234", "3000 1234", "00852-3000-1234", "(852) 3000 1234", "+85230001234"],
)
def test_a_hong_kong_number_is_read_however_it_is_written(typed: str) -> None:
    assert read(typed) == Reading("phone", "+85230001234")


def test_a_mainland_mobile_number_is_read_as_the_mainlands() -> None:
    assert read("138 0013 8000") == Reading("phone", "+8613800138000")


@pytest.mark.parametrize(
    ("typed", "host"),
    [
        ("https://www.tongka.hk/renew?x=1", "www.tongka.hk"),
        ("TONGKA.HK", "tongka.hk"),
        ("tongka.hk.", "tongka.hk"),
        ("http://tongka.hk@evil.com/login", "evil.com"),  # the user part is not the host
        ("https://evil.com\\@tongka.hk", "evil.com"),  # a backslash is a slash to a browser
        ("https://tongka.hk:8443/x", "tongka.hk"),
        ("tongka。hk", "tongka.hk"),  # an ideographic full stop is a dot to a browser
        ("https://tоngka.hk", "xn--tngka-jye.hk"),  # a Cyrillic о: another host
    ],
)
def test_a_web_address_is_read_as_its_host(typed: str, host: str) -> None:
    assert read(typed) == Reading("web", host)


def test_an_email_is_read_without_its_name_and_in_lower_case() -> None:
    assert read("tongka <Service@Tongka.HK>") == Reading("email", "service@tongka.hk")
    assert read("mailto:service@tongka.hk") == Reading("email", "service@tongka.hk")


def test_a_profile_address_is_the_platforms_account() -> None:
    assert read("https://www.facebook.com/TongkaHK/") == Reading("social", "tongkahk", "facebook")
    assert read("@TongkaHK") == Reading("social", "tongkahk")


def test_a_store_code_and_nonsense() -> None:
    assert read("lo-wu") == Reading("store", "lo-wu")
    for nothing in ("", "   ", "x" * 301, "a b c"):
        with pytest.raises(NotReadable):
            read(nothing)


def test_an_operator_value_is_normalised_by_its_kind() -> None:
    assert service.normalise("phone", "3000 1234") == "+85230001234"
    assert service.normalise("web", "https://Tongka.HK/") == "tongka.hk"
    assert service.normalise("email", "@Tongka.hk") == "@tongka.hk"
    assert service.normalise("social", "@TongkaHK") == "tongkahk"


@given(st.text(max_size=80))
@example("。")  # an ideographic full stop alone read as a web address with no host
@example("a。。b")
def test_reading_anything_either_reads_it_or_refuses_it(text: str) -> None:
    try:
        reading = read(text)
    except NotReadable:
        return
    assert reading.kind in ("phone", "web", "email", "social", "store")
    assert reading.value and reading.value == reading.value.strip()


@given(
    st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True),
    st.sampled_from(["com", "net", "cn", "xn--fiqs8s"]),
)
def test_no_host_that_merely_contains_ours_reads_as_ours_or_below_it(label: str, tld: str) -> None:
    for host in (f"tongka.hk.{label}.{tld}", f"tongka-hk.{tld}", f"{label}tongka.hk.{tld}"):
        found = read("https://" + host + "/pay").value
        assert found != "tongka.hk" and not found.endswith(".tongka.hk")
