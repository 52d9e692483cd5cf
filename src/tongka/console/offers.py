"""The console's offers and coupons: every offer with its budget and what was redeemed, a new
offer from a form, pause / resume / end, and batches of coupon codes (shown once, as a page and a
CSV file). Every change is in the audit log; coupon codes never are."""

from __future__ import annotations

import base64
import csv
import io
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, ValidationError

from tongka import web
from tongka.catalog import service as catalog
from tongka.console import forms
from tongka.deps import SessionDep, SettingsDep
from tongka.errors import TongkaError
from tongka.i18n import _
from tongka.money import CURRENCIES, format_bytes
from tongka.promotion import coupons, offers
from tongka.promotion.models import Offer
from tongka.promotion.schemas import OfferIn
from tongka.staff import audit

router = APIRouter(include_in_schema=False)

LIST = "web/console/offers_list.html"
NEW = "web/console/offers_new.html"
CODES = "web/console/offers_codes.html"
KINDS = ("coupon", "first_topup", "bonus_data", "spend_threshold")


class CodesForm(BaseModel):
    count: int = Field(default=1, ge=1, le=10000)
    max_uses: int | None = Field(default=1, ge=1)
    code: str | None = Field(default=None, min_length=4, max_length=40)


def _offer_facts(offer: Offer) -> dict[str, Any]:
    return {"code": offer.code, "kind": offer.kind, "status": offer.status}


@router.get("/console/offers", response_class=HTMLResponse)
def console_offers(request: Request, visitor: web.AdminDep, session: SessionDep) -> HTMLResponse:
    """Operator admins: every offer with its status, budget, redemptions and discount given."""
    report = {row.code: row for row in offers.report(session)}
    rows = [
        (o, report.get(o.code), offers.budgets(session, o.id)) for o in offers.all_offers(session)
    ]
    return web.page(request, visitor, LIST, {"rows": rows, "volume": format_bytes})


def _new_page(
    request: Request,
    visitor: web.Visitor,
    session: SessionDep,
    values: dict[str, Any],
    errors: dict[str, str],
) -> HTMLResponse:
    return web.page(
        request,
        visitor,
        NEW,
        {
            "values": values,
            "errors": errors,
            "kinds": KINDS,
            "packs": catalog.all_packs(session),
            "channels": catalog.CHANNELS,
            "zones": catalog.ZONES,
            "currencies": CURRENCIES,
            "name_languages": forms.LANGUAGES,
        },
        status_code=400 if errors else 200,
    )


@router.get("/console/offers/new", response_class=HTMLResponse)
def console_offer_new(request: Request, visitor: web.AdminDep, session: SessionDep) -> HTMLResponse:
    """Operator admins: the form for a new offer."""
    values = {"kind": "coupon", "channels": list(catalog.CHANNELS), "packs": []}
    return _new_page(request, visitor, session, values, {})


def _minor(
    posted: Any, field: str, currency: str, errors: dict[str, str], language: str
) -> int | None:
    """A money field in major units as minor units; None when empty."""
    text = forms.text(posted, field)
    if not text:
        return None
    try:
        return catalog.parse_price(text, currency)
    except TongkaError as e:
        errors[field] = e.detail(language)
        return None


def _spec(posted: Any, language: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The form as OfferIn's fields, and the problems found on the way (by field)."""
    t = web.translator(language)
    errors: dict[str, str] = {}
    kind = forms.text(posted, "kind")
    spec: dict[str, Any] = {
        "code": forms.text(posted, "code").lower(),
        "names": forms.names(posted),
        "kind": kind,
        "time_zone": "Asia/Hong_Kong",
        "channels": forms.chosen(posted, "channels", catalog.CHANNELS),
        "pack_codes": [c for c in posted.getlist("packs") if isinstance(c, str)] or None,
    }
    if "en" not in spec["names"]:
        errors["name_en"] = t(_("Fill in this field."))
    if not spec["channels"]:
        errors["channels"] = t(_("Choose at least one channel."))
    if kind in ("coupon", "first_topup"):
        percent = forms.text(posted, "percent_off")
        amounts = {
            c: a
            for c in CURRENCIES
            if (a := _minor(posted, f"amount_off_{c}", c, errors, language)) is not None
        }
        if bool(percent) == bool(amounts):
            errors["percent_off"] = t(_("Give either a percentage off or an amount off."))
        elif percent:
            spec["percent_off"] = percent
        else:
            spec["amount_off"] = amounts
    elif kind == "bonus_data":
        try:
            spec["bonus_bytes"] = catalog.parse_volume(forms.text(posted, "bonus_volume"))
        except TongkaError as e:
            errors["bonus_volume"] = e.detail(language)
        spec["bonus_zone"] = forms.text(posted, "bonus_zone") or None
        spec["bonus_validity_days"] = forms.text(posted, "bonus_validity_days") or None
    elif kind == "spend_threshold":
        tiers = []
        for c in CURRENCIES:
            least = _minor(posted, f"tier_min_{c}", c, errors, language)
            off = _minor(posted, f"tier_off_{c}", c, errors, language)
            if least and off:
                tiers.append({"currency": c, "min": least, "off": off})
        if not tiers:
            errors["tier_min_HKD"] = t(_("Give a threshold and what it saves."))
        spec["tiers"] = tiers
    for field in ("starts_at", "ends_at"):
        try:
            moment = forms.local_time(forms.text(posted, field))
        except ValueError:
            errors[field] = t(_("Enter a date and time."))
            continue
        spec[field] = moment
    if spec.get("starts_at") and spec.get("ends_at") and spec["ends_at"] <= spec["starts_at"]:
        errors["ends_at"] = t(_("The offer must end after it starts."))
    caps = {
        c: a
        for c in CURRENCIES
        if (a := _minor(posted, f"max_discount_{c}", c, errors, language)) is not None
    }
    spec["max_discount"] = caps or None
    for field in ("max_redemptions", "per_customer_limit"):
        spec[field] = forms.text(posted, field) or None
    return spec, errors


@router.post("/console/offers")
def console_offer_create(
    request: Request, visitor: web.AdminDep, posted: web.FormDep, session: SessionDep
) -> Response:
    """Operator admins: create an offer (a coupon, or one given automatically), active within its window."""
    assert visitor.staff is not None
    language = visitor.language
    values: dict[str, Any] = {k: forms.text(posted, k) for k in posted if k != web.CSRF_FIELD}
    values["channels"] = forms.chosen(posted, "channels", catalog.CHANNELS)
    values["packs"] = [c for c in posted.getlist("packs") if isinstance(c, str)]
    spec, errors = _spec(posted, language)
    if errors:
        return _new_page(request, visitor, session, values, errors)
    try:
        body = OfferIn.model_validate(spec)
    except ValidationError as error:
        found = web.form_errors(error, language)
        # A field's refusal shows at its field; a whole-form one at the top.
        return _new_page(
            request,
            visitor,
            session,
            values,
            {k.split(".")[0]: v for k, v in found.items()} or {"form": ""},
        )
    try:
        offer = offers.create(session, body, f"staff:{visitor.staff.username}")
    except offers.OfferCodeTaken as e:
        return _new_page(request, visitor, session, values, {"code": e.detail(language)})
    audit.record(
        session,
        visitor.staff,
        "offer.add",
        "offer",
        offer.id,
        after=body.model_dump(mode="json", exclude_none=True),
    )
    return web.redirect(request, f"/console/offers?added={offer.code}")


def _csv_link(offer: Offer, batch: str, codes: list[str]) -> str:
    """The codes as a CSV file in a `data:` link: the codes exist nowhere else to download later."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["offer", "batch", "code"])
    writer.writerows([offer.code, batch, code] for code in codes)
    encoded = base64.b64encode(out.getvalue().encode()).decode()
    return f"data:text/csv;charset=utf-8;base64,{encoded}"


@router.post("/console/offers/{offer_id}/codes")
def console_offer_codes(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    settings: SettingsDep,
    offer_id: uuid.UUID,
) -> Response:
    """Operator admins: make coupon codes for a coupon offer; they are shown this once (and as a CSV file)."""
    assert visitor.staff is not None
    language = visitor.language
    offer = offers.get(session, offer_id)
    shared = forms.text(posted, "code")
    form, errors = web.parse(
        CodesForm,
        {
            "count": forms.text(posted, "count") or "1",
            "max_uses": "" if shared else forms.text(posted, "max_uses"),
            "code": shared,
        },
        language,
    )
    context: dict[str, Any] = {"offer": offer, "codes": [], "errors": errors}
    if form is None:
        return web.page(request, visitor, CODES, context, status_code=400)
    batch = f"{offer.code}-{uuid.uuid4().hex[:8]}"[:40]
    try:
        # A savepoint: a refusal half-way (a code taken) keeps none of the batch.
        with session.begin_nested():
            codes = coupons.generate(
                session,
                offer,
                settings.secret_key.get_secret_value(),
                count=1 if form.code else form.count,
                max_uses=None if form.code else form.max_uses,
                code=form.code,
                batch=batch,
            )
    except TongkaError as e:
        context["errors"] = {"form": e.detail(language)}
        return web.page(request, visitor, CODES, context, status_code=e.status)
    audit.record(
        session,
        visitor.staff,
        "offer.codes",
        "offer",
        offer.id,
        after={
            "batch": batch,
            "count": len(codes),
            "max_uses": None if form.code else form.max_uses,
            "shared": bool(form.code),
        },
    )
    return web.page(
        request,
        visitor,
        CODES,
        {**context, "codes": codes, "batch": batch, "csv": _csv_link(offer, batch, codes)},
    )


# After /codes: a path this general would otherwise take it.
@router.post("/console/offers/{offer_id}/{action}")
def console_offer_move(
    request: Request,
    visitor: web.AdminDep,
    posted: web.FormDep,
    session: SessionDep,
    offer_id: uuid.UUID,
    action: Literal["pause", "resume", "end"],
) -> Response:
    """Operator admins: pause an offer, resume it, or end it for good."""
    assert visitor.staff is not None
    offer = offers.get(session, offer_id)
    before = _offer_facts(offer)
    offers.move(session, offer, action)
    after = _offer_facts(offer)
    if after != before:
        audit.record(
            session, visitor.staff, f"offer.{action}", "offer", offer.id, before=before, after=after
        )
    return web.redirect(request, "/console/offers")
