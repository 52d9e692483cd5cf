"""Provider callbacks. Who may call: the payment provider, proven by its signature (checked by the provider class)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from tongka.deps import ProvidersDep, SessionDep, SettingsDep
from tongka.payment import service

router = APIRouter(tags=["payments"])


async def _raw_body(request: Request) -> bytes:
    # Signatures cover the exact bytes sent, so the body is read raw, never re-encoded.
    return await request.body()


@router.post("/api/v1/payments/callbacks/{provider}")
def callback(
    provider: str,
    request: Request,
    body: Annotated[bytes, Depends(_raw_body)],
    session: SessionDep,
    providers: ProvidersDep,
    settings: SettingsDep,
) -> Response:
    """The payment provider, proven by its signature: a payment succeeded or failed. A bad signature is 400 and changes nothing."""
    answer = service.handle_callback(
        session, providers, provider, dict(request.headers), body, receipt_key=settings.receipt_key
    )
    return Response(answer.body, status_code=answer.status_code, media_type=answer.media_type)
