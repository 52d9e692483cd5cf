"""The renewal page a phone is sent to (finalUnitIndication REDIRECT) when its line's data has run out.

Who may call: anyone — the phone's browser opens it while its data is stopped, with no
login. It is reached by the line's random id and shows only the line's number masked,
the packs on sale for it and the overage rates; never its balance or owner.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tongka.account.identity import mask
from tongka.account.models import Line
from tongka.catalog import service as catalog
from tongka.charging import overage
from tongka.deps import SessionDep, request_language
from tongka.i18n import _, gettext
from tongka.money import Money, currency
from tongka.templating import pack_rows, templates

router = APIRouter(tags=["charging (network)"])

TEXT = {
    "title": _("Your data has run out"),
    "lead": _("Data on line {number} has stopped: its packs are used up or have expired."),
    "renew": _(
        "Renew with a pack in the tongka app, on the web or at a tongka store, and data starts again at once."
    ),
    "open_app": _("Open the tongka app"),
    "packs": _("Packs on sale"),
    "overage": _(
        "Or turn on overage in the app: data continues at the published rate, up to a monthly cap you choose."
    ),
    "rates": _("Overage rates"),
    "unknown": _("This line is not known to tongka."),
    "per_mb": _("{price} per MB"),
}


@router.get("/renew/{line_id}", response_class=HTMLResponse, include_in_schema=False)
def renew_page(line_id: uuid.UUID, request: Request, session: SessionDep) -> HTMLResponse:
    """Anyone (a phone whose data stopped): how to get data again on this line."""
    language = request_language(request)
    t = {key: gettext(text, language) for key, text in TEXT.items()}
    line = session.get(Line, line_id)
    headers = {"Content-Language": language, "Cache-Control": "no-store"}
    if line is None:
        return templates.TemplateResponse(
            request,
            "charging/renew.html",
            {"lang": language, "t": t, "line": None},
            status_code=404,
            headers=headers,
        )
    number = line.hk_number or line.cn_number or line.iccid
    rates = [
        {
            "zone": r.zone,
            "price": gettext(
                TEXT["per_mb"],
                language,
                price=Money(r.per_mb, currency(r.currency)).format(language),
            ),
        }
        for r in overage.rates(session)
    ]
    return templates.TemplateResponse(
        request,
        "charging/renew.html",
        {
            "lang": language,
            "t": t,
            "line": line,
            "lead": gettext(TEXT["lead"], language, number=mask(number)),
            "packs": pack_rows(catalog.packs_on_sale(session, "app"), language),
            "rates": rates,
            "app_link": f"tongka://lines/{line.id}/renew",
        },
        headers=headers,
    )
