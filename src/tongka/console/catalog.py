"""The console's packs and prices: the list, a new pack, a pack's page (its names, channels, sale
window, whether it is on sale, its prices and their history). Every change is in the audit log."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from tongka import web
from tongka.catalog import service as catalog
from tongka.catalog.models import Pack
from tongka.console import forms
from tongka.deps import SessionDep
from tongka.errors import TongkaError
from tongka.i18n import _
from tongka.money import CURRENCIES, format_bytes
from tongka.staff import audit

router = APIRouter(include_in_schema=False)

LIST = "web/console/catalog_list.html"
NEW = "web/console/catalog_new.html"
PACK = "web/console/catalog_pack.html"


class NewPackForm(BaseModel):
    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,39}$")
    zone: str = Field(pattern="^(mainland|hk|both)$")
    validity_days: int = Field(gt=0, le=3660)


def _pack_facts(pack: Pack) -> dict[str, Any]:
    """What the audit log keeps of a pack."""
    return {
        "names": pack.names,
        "channels": pack.channels,
        "sale_starts_at": pack.sale_starts_at,
        "sale_ends_at": pack.sale_ends_at,
        "active": pack.active,
    }


def _window(posted: Any, errors: dict[str, str], language: str) -> tuple[Any, Any]:
    """The sale window's two times, or an error on each field that is not a time."""
    found = []
    for field in ("sale_starts_at", "sale_ends_at"):
        try:
            found.append(forms.local_time(forms.text(posted, field)))
        except ValueError:
            errors[field] = web.translator(language)(_("Enter a date and time."))
            found.append(None)
    return found[0], found[1]


@router.get("/console/packs", response_class=HTMLResponse)
def console_packs(request: Request, visitor: web.AdminDep, session: SessionDep) -> HTMLResponse:
    """Operator admins: every pack, on sale or not, with its prices."""
    return web.page(
        request,
        visitor,
        LIST,
        {"packs": catalog.all_packs(session), "currencies": CURRENCIES, "volume": format_bytes},
    )


def _new_page(
    request: Request, visitor: web.Visitor, values: dict[str, Any], errors: dict[str, str]
) -> HTMLResponse:
    return web.page(
        request,
        visitor,
        NEW,
        {
            "values": values,
            "errors": errors,
            "zones": catalog.ZONES,
            "channels": catalog.CHANNELS,
            "currencies": CURRENCIES,
            "name_languages": forms.LANGUAGES,
        },
        status_code=400 if errors else 200,
    )


@router.get("/console/packs/new", response_class=HTMLResponse)
def console_pack_new(request: Request, visitor: web.AdminDep) -> HTMLResponse:
    """Operator admins: the form for a new pack."""
    return _new_page(request, visitor, {"channels": list(catalog.CHANNELS)}, {})


@router.post("/console/packs")
def console_pack_create(
    request: Request, visitor: web.AdminDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """Operator admins: add a pack (code, names, zone, volume, validity, prices, channels, sale window)."""
    assert visitor.staff is not None
    language = visitor.language
    t = web.translator(language)
    values: dict[str, Any] = {k: forms.text(posted, k) for k in posted if k != web.CSRF_FIELD}
    values["channels"] = forms.chosen(posted, "channels", catalog.CHANNELS)
    form, errors = web.parse(
        NewPackForm,
        {k: values.get(k, "") for k in ("code", "zone", "validity_days")},
        language,
    )
    names = forms.names(posted)
    if "en" not in names:
        errors["name_en"] = t(_("Fill in this field."))
    volume = 0
    try:
        volume = catalog.parse_volume(values.get("volume", ""))
    except TongkaError as e:
        errors["volume"] = e.detail(language)
    prices: dict[str, int] = {}
    for currency in CURRENCIES:
        if not values.get(f"price_{currency}"):
            continue  # a pack may be sold in one currency only (the other is converted)
        try:
            prices[currency] = catalog.parse_price(values[f"price_{currency}"], currency)
        except TongkaError as e:
            errors[f"price_{currency}"] = e.detail(language)
    if not prices and not any(k.startswith("price_") for k in errors):
        errors[f"price_{CURRENCIES[0]}"] = t(_("Give a price in at least one currency."))
    if not values["channels"]:
        errors["channels"] = t(_("Choose at least one channel."))
    starts, ends = _window(posted, errors, language)
    if form is None or errors:
        return _new_page(request, visitor, values, errors)
    try:
        pack = catalog.create_pack(
            session,
            code=form.code,
            names=names,
            zone=form.zone,
            volume_bytes=volume,
            validity_days=form.validity_days,
            prices=prices,
            channels=values["channels"],
            sale_starts_at=starts,
            sale_ends_at=ends,
            changed_by=visitor.staff.username,
        )
    except (catalog.PackCodeTaken, catalog.SaleWindowInvalid) as e:
        field = "code" if isinstance(e, catalog.PackCodeTaken) else "sale_ends_at"
        return _new_page(request, visitor, values, {field: e.detail(language)})
    audit.record(
        session,
        visitor.staff,
        "pack.add",
        "pack",
        pack.id,
        after={
            "code": pack.code,
            "zone": pack.zone,
            "volume_bytes": pack.volume_bytes,
            "validity_days": pack.validity_days,
            "prices": prices,
            **_pack_facts(pack),
        },
    )
    return web.redirect(request, f"/console/packs/{pack.id}")


def _pack_page(
    request: Request,
    visitor: web.Visitor,
    session: SessionDep,
    pack: Pack,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
    saved: str | None = None,
) -> HTMLResponse:
    return web.page(
        request,
        visitor,
        PACK,
        {
            "pack": pack,
            "volume": format_bytes(pack.volume_bytes),
            "history": catalog.price_history(session, pack.id),
            "channels": catalog.CHANNELS,
            "currencies": CURRENCIES,
            "name_languages": forms.LANGUAGES,
            "starts": forms.local_input(pack.sale_starts_at),
            "ends": forms.local_input(pack.sale_ends_at),
            "errors": errors or {},
            "values": values or {},
            "saved": saved,
        },
        status_code=400 if errors else 200,
    )


@router.get("/console/packs/{pack_id}", response_class=HTMLResponse)
def console_pack(
    request: Request,
    visitor: web.AdminDep,
    session: SessionDep,
    pack_id: uuid.UUID,
    saved: str | None = None,
) -> HTMLResponse:
    """Operator admins: one pack: edit it, change a price, and its price history."""
    return _pack_page(request, visitor, session, catalog.get_pack(session, pack_id), saved=saved)


@router.post("/console/packs/{pack_id}")
def console_pack_edit(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    pack_id: uuid.UUID,
) -> Response:
    """Operator admins: change a pack's names, channels, sale window or whether it is on sale."""
    assert visitor.staff is not None
    language = visitor.language
    t = web.translator(language)
    pack = catalog.get_pack(session, pack_id)
    errors: dict[str, str] = {}
    names = forms.names(posted)
    if "en" not in names:
        errors["name_en"] = t(_("Fill in this field."))
    channels = forms.chosen(posted, "channels", catalog.CHANNELS)
    if not channels:
        errors["channels"] = t(_("Choose at least one channel."))
    starts, ends = _window(posted, errors, language)
    if starts and ends and ends <= starts:
        errors["sale_ends_at"] = catalog.SaleWindowInvalid().detail(language)
    if errors:
        return _pack_page(request, visitor, session, pack, errors=errors)
    before = _pack_facts(pack)
    catalog.edit_pack(
        session,
        pack,
        catalog.PackEdit(
            names=names,
            channels=channels,
            sale_starts_at=starts,
            sale_ends_at=ends,
            active=forms.text(posted, "active") == "on",
        ),
    )
    after = _pack_facts(pack)
    if after != before:
        audit.record(
            session, visitor.staff, "pack.edit", "pack", pack.id, before=before, after=after
        )
    return web.redirect(request, f"/console/packs/{pack.id}?saved=pack")


@router.post("/console/packs/{pack_id}/prices")
def console_pack_price(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    pack_id: uuid.UUID,
) -> Response:
    """Operator admins: change a pack's list price in one currency (orders already placed keep theirs)."""
    assert visitor.staff is not None
    language = visitor.language
    pack = catalog.get_pack(session, pack_id)
    currency = forms.text(posted, "currency")
    values = {"currency": currency, "amount": forms.text(posted, "amount")}
    if currency not in CURRENCIES:
        return _pack_page(
            request,
            visitor,
            session,
            pack,
            errors={"currency": web.translator(language)(_("Choose one of the options."))},
            values=values,
        )
    try:
        amount = catalog.parse_price(values["amount"], currency)
    except TongkaError as e:
        return _pack_page(
            request, visitor, session, pack, errors={"amount": e.detail(language)}, values=values
        )
    change = catalog.set_price(session, pack, currency, amount, visitor.staff.username)
    if change is not None:
        audit.record(
            session,
            visitor.staff,
            "pack.price",
            "pack",
            pack.id,
            before={"currency": currency, "amount": change.old_amount},
            after={"currency": currency, "amount": amount},
        )
    return web.redirect(request, f"/console/packs/{pack.id}?saved=price")
