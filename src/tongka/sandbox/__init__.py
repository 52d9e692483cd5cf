"""The payment sandbox: each provider's side played on this server, for the demo and the tests.

Dev only: the app factory calls `mount` when the sandbox is on (`TONGKA_PAYMENT_SANDBOX`, on
in dev), never in production, where `config.check` refuses to start with it on. The sandbox
may import the providers' wire formats (`payment/providers/*`) and what it needs to play a
provider; `payment` never imports it, and nothing but the app factory and the CLI does.

  generic.py    the generic sandbox provider's checkout page and callbacks (/sandbox/payments),
                and "the payer pays" for a payment at any provider
  wechat.py alipay.py stripe.py paypal.py
                each provider as it plays itself, mounted at /sandbox/<name>
  delivery.py   the callbacks sent to tongka in-process, at once or after the answer
  store.py      the simulators' own records, in a database of their own
  statement.py  the settlement statement a provider would send (`tongka sandbox statement`)
  keys.py       both sides of every provider's keys (`tongka keys generate`)

Each simulator module `sandbox/<name>.py` has:
  router       an APIRouter mounted at /sandbox/<name>: the provider's API paths (as the
               real API has them, under that prefix) and the pages a payer sees
  complete     `async def complete(request, payment: SimPayment, outcome) -> int`: the payer
               pays ("succeeded") or gives up ("failed"); the simulator updates its record and
               sends its signed callback to tongka, returning the callback's HTTP status
Simulators keep their records in `store.SimPayment` and sign with the `sandbox_*` keys from
the settings. Who may call them: anyone, and only when the sandbox is on.
"""

from __future__ import annotations

from fastapi import FastAPI

from tongka.config import Settings
from tongka.sandbox.delivery import drain

__all__ = ["drain", "mount"]


def mount(app: FastAPI, settings: Settings) -> None:
    """Add the sandbox's routes to the app: the generic provider's and each simulator's."""
    if not settings.sandbox_enabled:
        raise RuntimeError("the payment sandbox is off: its routes must not be mounted")
    # Imported here: the CLI's `keys generate` and `sandbox statement` need none of the routes.
    from tongka.sandbox import generic

    app.include_router(generic.router)
    for name, simulator in generic.SIMULATORS.items():
        app.include_router(simulator.router, prefix=f"/sandbox/{name}", tags=["sandbox"])
