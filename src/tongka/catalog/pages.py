"""The home page, /: what tongka is, the packs on sale on the web by zone, the offers running, the
stores, and the way in.

Who may call: anyone. It says the same to everyone in a language, so caches may keep it a minute
(`web.public_page`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tongka import web
from tongka.catalog import service as catalog
from tongka.demo import DEMO_PASSWORD, DEMO_USERNAME
from tongka.deps import SessionDep
from tongka.i18n import _, gettext
from tongka.promotion import service as promotions
from tongka.promotion.models import Offer
from tongka.promotion.pricing import ZONE_NAMES
from tongka.templating import pack_rows

router = APIRouter(tags=["catalog"])

CHANNEL = "web"
ZONES = {
    "hk": _("Data on Hong Kong's networks (csl, China Mobile Hong Kong)."),
    "mainland": _("Data on the mainland's networks (China Mobile, China Unicom)."),
    "both": _("One pack for both sides of the border."),
}
REGIONS = {"hk": _("Hong Kong accounts"), "mainland": _("Mainland accounts")}


def _offer(offer: Offer, language: str) -> dict[str, Any]:
    """An offer as the home page tells it: its name and who or when it is for."""
    notes = []
    if offer.new_customers_only or offer.kind == "first_topup":
        notes.append(gettext(_("New customers"), language))
    if offer.regions:
        notes += [gettext(REGIONS[r], language) for r in offer.regions]
    if offer.kind == "coupon":
        notes.append(gettext(_("With a coupon code"), language))
    if offer.ends_at is not None:
        until = web.when(offer.ends_at, language, time=False)
        notes.append(gettext(_("Until {date}"), language, date=until))
    return {"code": offer.code, "name": offer.name(language), "notes": notes}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home(request: Request, visitor: web.VisitorDep, session: SessionDep) -> HTMLResponse:
    """Anyone: what tongka is, the packs on sale on the web by zone (the visitor's currency first),
    the offers running on the web, the stores, and the way to sign up or in."""
    language = visitor.language
    rows = pack_rows(catalog.packs_on_sale(session, CHANNEL), language)
    zones = [
        {
            "zone": zone,
            "name": gettext(ZONE_NAMES[zone], language),
            "about": gettext(about, language),
            "packs": [r for r in rows if r["zone"] == zone],
        }
        for zone, about in ZONES.items()
    ]
    context: dict[str, Any] = {
        "zones": [z for z in zones if z["packs"]],
        "offers": [_offer(o, language) for o in promotions.running(session, CHANNEL)],
    }
    if request.app.state.settings.dev:
        context["demo"] = {"username": DEMO_USERNAME, "password": DEMO_PASSWORD}
    return web.public_page(request, visitor, "web/home.html", context)
