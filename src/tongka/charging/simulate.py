"""A packet core's side of online charging, so the demo's balances and usage charts move.

Each simulated phone plays its SMF towards tongka's Nchf listener over HTTP/2 only, as an SMF
does (Nchf_ConvergedCharging v3, as `api.py` serves it; h2c with prior knowledge, or TLS with
ALPN h2 and, for mutual TLS, a client certificate): it attaches to a network (mainland: China Mobile 460-00,
China Unicom 460-01; Hong Kong: HKT/csl 454-00, CMHK 454-12) with a create that asks for
quota, reports what it used and asks for more every few seconds (sooner when the grant's
threshold is near), and releases at the end. Usage follows what a person does (idle,
browsing, video); it stays within the grant, as the user plane stops at the quota,
except now and then a little beyond (packets in flight). A QUOTA_LIMIT_REACHED ends the
session at once; a final unit is used up without asking for more, then the session ends;
either way the phone tries again later, perhaps across the border. Now and then a phone
crosses the border mid-session, as at Lo Wu or Futian: its SMF closes the containers at
the change with a PLMN_CHANGE trigger (which tongka arms), reports at once with the new
network's `servingCNPlmnId` and what was used on each side, and carries on with the
quota granted in the new zone. Some sessions also visit the self-service site or app
(`SELF_SERVICE_RATING_GROUP`, zero-rated in the demo), a rating group of its own in the
same messages. No notifyUri is given (nothing here could receive it). Ctrl-C, or the end
of the run, releases every open session.

Which lines play is read from the database by the command line (`subscribers`); the
rest speaks only HTTP.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import httpx
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tongka.account.models import Line
from tongka.money import KB, MB

BASE_PATH = "/nchf-convergedcharging/v3/chargingdata"
NCHF_URL = "http://127.0.0.1:8001"  # the Nchf listener's default address (TONGKA_NCHF_BIND)
RATING_GROUP = 10  # the operator's internet rating group
SELF_SERVICE_RATING_GROUP = 20  # the self-service site and app (zero-rated by the demo's operator)
SELF_SERVICE_CHANCE = 0.3  # of a session: the person opens the app or the site during it
SELF_SERVICE_RATE = (2 * KB, 20 * KB)  # bytes/s while they do
SELF_SERVICE_ASK = 1 * MB
NETWORKS = {
    "mainland": (("460", "00"), ("460", "01")),  # China Mobile, China Unicom
    "hk": (("454", "00"), ("454", "12")),  # HKT/csl, China Mobile Hong Kong
}
OTHER_ZONE = {"mainland": "hk", "hk": "mainland"}
# What a person does, and for how long: (name, weight, bytes/s low and high, quota asked per request).
ACTIVITIES = (
    ("idle", 3, 1 * KB, 10 * KB, 1 * MB),
    ("browsing", 5, 30 * KB, 200 * KB, 4 * MB),
    ("video", 2, 300 * KB, 1200 * KB, 16 * MB),
)
ACTIVITY_SECONDS = (10.0, 60.0)


@dataclass(frozen=True)
class Subscriber:
    """A line as the network knows it: SUPI (`imsi-<digits>`) and/or GPSI (`msisdn-<digits>`)."""

    supi: str | None
    gpsi: str | None
    home: str  # the zone it starts in: hk with a +852 number, else mainland


@dataclass(frozen=True)
class Pace:
    """How often things happen; the defaults look like a real network, tests go faster."""

    update_every: tuple[float, float] = (2.0, 5.0)  # seconds between updates
    cross_chance: float = 0.03  # per update: release and attach across the border
    overrun_chance: float = 0.05  # per report: usage a little beyond the grant (up to 5 %)
    retry_after: tuple[float, float] = (
        10.0,
        30.0,
    )  # seconds before attaching again after a refusal
    min_wait: float = 0.5  # never update faster than this, whatever the threshold says


def subscribers(session: Session, count: int) -> list[Subscriber]:
    """Up to `count` active lines that a network can name: bound lines first (they have data), then the rest."""
    lines = session.scalars(
        select(Line)
        .where(
            Line.status == "active",
            or_(Line.imsi.is_not(None), Line.hk_number.is_not(None), Line.cn_number.is_not(None)),
        )
        .order_by(Line.account_id.is_(None), Line.bound_at, Line.iccid)
        .limit(count)
    )
    return [
        Subscriber(
            supi=f"imsi-{line.imsi}" if line.imsi else None,
            gpsi="msisdn-" + number.removeprefix("+")
            if (number := line.hk_number or line.cn_number)
            else None,
            home="hk" if line.hk_number else "mainland",
        )
        for line in lines
    ]


@dataclass
class Figures:
    """What the run has done so far; `line()` is the live figure, `summary()` the last word."""

    started: float = field(default_factory=time.monotonic)
    open_sessions: int = 0
    opened: int = 0
    released: int = 0
    crossings: int = 0  # reported mid-session (PLMN_CHANGE)
    crossed_bytes: int = (
        0  # used after a crossing on the old grant, reported with it: the new zone's
    )
    zero_rated_bytes: int = 0  # used on the self-service group
    cut_off: int = 0  # sessions ended by a final unit or QUOTA_LIMIT_REACHED
    refusals: Counter[str] = field(
        default_factory=Counter
    )  # by cause: QUOTA_LIMIT_REACHED, USER_UNKNOWN, ...
    errors: int = 0  # 5xx, malformed answers, unreachable server
    granted_bytes: int = 0
    used_bytes: int = 0
    beyond_bytes: int = 0  # reported beyond what was granted
    used_by_zone: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    interrupted: bool = False
    abandoned: int = 0  # sessions that could not be released

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def line(self, rate: float) -> str:
        return (
            f"{self.elapsed():5.0f}s  sessions {self.open_sessions:3}  {rate:6.1f} req/s  "
            f"granted {self.granted_bytes / MB:9.1f} MB  used {self.used_bytes / MB:9.1f} MB  "
            f"refusals {self.refusals.total()}  errors {self.errors}"
        )

    def summary(self, phones: int, base_url: str) -> str:
        total = sum(self.requests.values())
        seconds = max(self.elapsed(), 1e-9)
        ordered = sorted(self.latencies)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else 0.0

        zones = (
            ", ".join(f"{z} {b / MB:.1f} MB" for z, b in sorted(self.used_by_zone.items()))
            or "none"
        )
        kinds = ", ".join(f"{k} {self.requests[k]}" for k in ("create", "update", "release"))
        # why, so that lines refused for not being in service (the demo's spare ones) are not taken for a fault
        causes = (
            " (" + ", ".join(f"{c} {n}" for c, n in self.refusals.most_common()) + ")"
            if self.refusals
            else ""
        )
        sessions = f"sessions opened {self.opened}, released {self.released}"
        if self.abandoned:
            sessions += f", NOT released {self.abandoned} (the server was not answering)"
        return "\n".join(
            [
                (
                    f"simulated {phones} line(s) {'interrupted after' if self.interrupted else 'for'} {seconds:.0f} s "
                    f"against {base_url}"
                ),
                f"  {sessions}; border crossings {self.crossings}; cut off at the end of their quota {self.cut_off}",
                f"  self-service (zero-rated) {self.zero_rated_bytes / MB:.2f} MB",
                (
                    f"  requests {total} ({kinds}), {total / seconds:.1f}/s; latency p50 {pct(0.50):.1f} ms, "
                    f"p99 {pct(0.99):.1f} ms"
                ),
                (
                    f"  granted {self.granted_bytes / MB:.1f} MB; used {self.used_bytes / MB:.1f} MB ({zones}), "
                    f"of which beyond the grants {self.beyond_bytes / MB:.2f} MB"
                ),
                f"  refusals {self.refusals.total()}{causes}, errors {self.errors}",
            ]
        )


class Phone:
    """One subscriber's handset and the SMF serving it: at most one charging session at a time."""

    def __init__(self, sim: Simulation, subscriber: Subscriber, rng: random.Random) -> None:
        self.sim, self.subscriber, self.rng = sim, subscriber, rng
        # Most phones start at home; cross-border commuters are often on the other side.
        self._move(subscriber.home if rng.random() < 0.7 else OTHER_ZONE[subscriber.home])
        self.location: str | None = None  # the open charging session's URL (from Location)
        self.seq = 0
        self.charging_id = 0
        self.granted = 0  # the open grant
        self.threshold = 0
        self.final = False  # the open grant is the last one
        self.demand, self.since = (
            0.0,
            time.monotonic(),
        )  # demand on the open grant, counted up to `since`
        self.rate = 0.0  # bytes/s
        self.free_rate = 0.0  # bytes/s on the self-service group, when visited in this session
        self.free_granted, self.free_since = 0, time.monotonic()
        self._pick_activity()

    async def live(self) -> None:
        sim = self.sim
        await sim.pause(self.rng.uniform(0, 1))  # phones do not all attach in the same instant
        try:
            while not sim.stopping():
                if not await self._attach():
                    await sim.pause(self.rng.uniform(*sim.pace.retry_after))
                    if (
                        self.rng.random() < 0.5
                    ):  # no quota here: perhaps there is some across the border
                        self._move(OTHER_ZONE[self.zone])
                    continue
                while self.location and not sim.stopping():
                    await sim.pause(self._next_update_in())
                    if sim.stopping():
                        break
                    if self.final:  # no update on a final unit: it is used up, then the network ends the session
                        if self._demand() >= self.granted:
                            sim.figures.cut_off += 1
                            await self._release(self._used())
                    elif self.rng.random() < sim.pace.cross_chance:
                        await self._cross()
                    else:
                        await self._update()
        finally:
            if self.location:
                await self._release(self._used())

    # --- the three operations -------------------------------------------------------------

    async def _attach(self) -> bool:
        """Create a charging session with a first quota; False if refused or nothing was granted."""
        self.seq, self.charging_id = 0, self.rng.randrange(1, 2**32)
        self.free_rate = (
            self.rng.uniform(*SELF_SERVICE_RATE) if self.rng.random() < SELF_SERVICE_CHANCE else 0.0
        )
        self.free_granted = 0
        figures = self.sim.figures
        answer = await self.sim.post(
            "create", BASE_PATH, self._body(requested=self.quota_ask, free=(None, True))
        )
        if answer is None:
            return False
        if answer.status_code in (
            403,
            404,
        ):  # END_USER_REQUEST_DENIED (line not in service), USER_UNKNOWN
            figures.refusals[_cause(answer)] += 1
            return False
        if answer.status_code != 201 or "location" not in answer.headers:
            figures.errors += 1
            return False
        self.location = answer.headers["location"]
        figures.opened += 1
        figures.open_sessions += 1
        if not self._take(answer):  # QUOTA_LIMIT_REACHED: nothing to use, end it at once
            await self._release(0)
            return False
        return True

    async def _update(self) -> None:
        """Report the open grant's usage and ask for more; end the session if no more is granted."""
        assert self.location
        used, free = self._used(), self._free_used()
        answer = await self.sim.post(
            "update",
            f"{self.location}/update",
            self._body(used=used, requested=self.quota_ask, free=(free, True)),
        )
        if answer is None or answer.status_code != 200:
            if answer is not None:
                self.sim.figures.errors += 1
            await self._release(used, free)  # as an SMF does when its CHF fails it: end the session
            return
        self._count_usage(used, free)
        if not self._take(answer):
            self.sim.figures.cut_off += 1
            await self._release(0)

    async def _cross(self) -> None:
        """The phone moves to a network of the other zone mid-session. Its SMF (told to by the armed
        PLMN_CHANGE trigger) closes the containers at the change and reports at once: what was used
        before it, closed by PLMN_CHANGE, and what was used since on the new network, in a container
        after it, with the new network as `servingCNPlmnId`; and asks for quota there."""
        assert self.location
        figures = self.sim.figures
        used, free = self._used(), self._free_used()
        before = (
            used * self.rng.randint(50, 95) // 100
        )  # the rest came after the change, on the old quota
        old_zone = self.zone
        self._move(OTHER_ZONE[self.zone])
        body = self._body(
            used=before, after=used - before, requested=self.quota_ask, free=(free, True)
        )
        answer = await self.sim.post("update", f"{self.location}/update", body)
        if answer is None or answer.status_code != 200:
            if answer is not None:
                figures.errors += 1
            await self._release(0)
            return
        figures.crossings += 1
        figures.crossed_bytes += used - before
        figures.used_bytes += (
            used - before
        )  # after the change: charged in the new zone, beyond no grant
        figures.used_by_zone[self.zone] += used - before
        self._count_usage(before, free, zone=old_zone)
        if not self._take(answer):
            figures.cut_off += 1
            await self._release(0)

    async def _release(self, used: int, free: int | None = None) -> None:
        """Report the final usage and end the session. The phone forgets it whatever the answer."""
        assert self.location
        figures = self.sim.figures
        free = self._free_used() if free is None else free
        answer = await self.sim.post(
            "release",
            f"{self.location}/release",
            self._body(used=used, final=True, free=(free, False)),
        )
        if answer is not None and answer.status_code == 204:
            self._count_usage(used, free)
            figures.released += 1
        elif answer is not None:  # 404: the server had ended it already
            figures.errors += 1
        else:  # never answered: it stays open on the server until its reservations lapse
            figures.abandoned += 1
        figures.open_sessions -= 1
        self.location, self.granted, self.final, self.free_granted = None, 0, False, 0

    # --- helpers --------------------------------------------------------------------------

    def _take(self, answer: httpx.Response) -> bool:
        """Read the rating group's answer; False when nothing was granted (a refusal)."""
        units = answer.json().get("multipleUnitInformation", [])
        free: dict[str, Any] = next(
            (u for u in units if u.get("ratingGroup") == SELF_SERVICE_RATING_GROUP), {}
        )
        self.free_granted = int(free.get("grantedUnit", {}).get("totalVolume", 0))
        self.free_since = time.monotonic()
        unit: dict[str, Any] = next((u for u in units if u.get("ratingGroup") == RATING_GROUP), {})
        granted = int(unit.get("grantedUnit", {}).get("totalVolume", 0))
        if unit.get("resultCode") != "SUCCESS" or granted == 0:
            self.sim.figures.refusals[str(unit.get("resultCode", "NOTHING_GRANTED"))] += 1
            return False
        self.granted, self.demand, self.since = granted, 0.0, time.monotonic()
        self.threshold = int(unit.get("volumeQuotaThreshold", 0))
        self.final = "finalUnitIndication" in unit
        self.sim.figures.granted_bytes += granted
        return True

    def _demand(self) -> int:
        """What the person would have used since the open grant arrived, were nothing stopping them."""
        now = time.monotonic()
        if now > self.activity_until:
            self._pick_activity()
        return int(self.demand + self.rate * (now - self.since))

    def _used(self) -> int:
        """What the phone used of the open grant: its demand, stopped at the quota by the user plane,
        except now and then a little beyond (packets already in flight)."""
        limit = self.granted
        if self.rng.random() < self.sim.pace.overrun_chance:
            limit += int(self.granted * self.rng.uniform(0, 0.05))
        return min(self._demand(), limit)

    def _free_used(self) -> int | None:
        """What the self-service site or app used of its grant (None when the session never visits it)."""
        if not self.free_rate:
            return None
        return min(self.free_granted, int(self.free_rate * (time.monotonic() - self.free_since)))

    def _next_update_in(self) -> float:
        """A few seconds, or sooner when the grant would reach its threshold (as the SMF is told to);
        on a final unit, when it will be used up."""
        left = self.granted - self.threshold - self._demand()
        wait = (
            left / self.rate
            if self.final
            else min(self.rng.uniform(*self.sim.pace.update_every), left / self.rate)
        )
        return max(wait, self.sim.pace.min_wait)

    def _pick_activity(self) -> None:
        """The person turns to something else: what went before is counted at the old rate."""
        now = time.monotonic()
        self.demand += self.rate * (now - self.since)
        self.since = now
        _name, _weight, low, high, ask = self.rng.choices(
            ACTIVITIES, weights=[a[1] for a in ACTIVITIES]
        )[0]
        self.rate, self.quota_ask = self.rng.uniform(low, high), ask
        self.activity_until = now + self.rng.uniform(*ACTIVITY_SECONDS)

    def _count_usage(self, used: int, free: int | None = None, *, zone: str | None = None) -> None:
        """Count what the open grant covered (`used`, beyond it too), in `zone` (the phone's now by default)."""
        figures = self.sim.figures
        figures.zero_rated_bytes += free or 0
        figures.used_bytes += used
        figures.beyond_bytes += max(0, used - self.granted)
        if used:
            figures.used_by_zone[zone or self.zone] += used
        self.granted = 0

    def _move(self, zone: str) -> None:
        self.zone, self.plmn = zone, self.rng.choice(NETWORKS[zone])

    def _body(
        self,
        *,
        requested: int | None = None,
        used: int | None = None,
        final: bool = False,
        after: int | None = None,
        free: tuple[int | None, bool] = (None, False),
    ) -> dict[str, Any]:
        """A ChargingDataRequest as an SMF of the serving network writes it (TS 32.291 §6.1.6.2).

        `after`: the phone changed network; `used` is closed by PLMN_CHANGE, `after` was used since.
        `free`: (used, ask again) on the self-service group, if the session visits it (used None: it does not).
        """
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        trigger = "FINAL" if final else "PLMN_CHANGE" if after is not None else "QUOTA_THRESHOLD"

        def container(volume: int, number: int, why: str) -> dict[str, Any]:
            down = volume * 9 // 10  # mostly downlink, as people's traffic is
            return {
                "totalVolume": volume,
                "uplinkVolume": volume - down,
                "downlinkVolume": down,
                "localSequenceNumber": number,
                "quotaManagementIndicator": "ONLINE_CHARGING",
                "triggers": [{"triggerType": why, "triggerCategory": "IMMEDIATE_REPORT"}],
                "triggerTimestamp": stamp,
            }

        usage: dict[str, Any] = {"ratingGroup": RATING_GROUP}
        if requested is not None:
            usage["requestedUnit"] = {"totalVolume": requested}
        if used is not None:
            usage["usedUnitContainer"] = [container(used, 2 * self.seq, trigger)]
            if after is not None:
                usage["usedUnitContainer"].append(
                    container(after, 2 * self.seq + 1, "QUOTA_THRESHOLD")
                )
        units = [usage]
        free_used, free_ask = free
        if self.free_rate:
            visit: dict[str, Any] = {"ratingGroup": SELF_SERVICE_RATING_GROUP}
            if free_ask:
                visit["requestedUnit"] = {"totalVolume": SELF_SERVICE_ASK}
            if free_used is not None:
                visit["usedUnitContainer"] = [container(free_used, 2 * self.seq, trigger)]
            units.append(visit)
        mcc, mnc = self.plmn
        body: dict[str, Any] = {
            "nfConsumerIdentification": {
                "nodeFunctionality": "SMF",
                "nFName": str(
                    uuid.uuid5(uuid.NAMESPACE_DNS, f"smf.5gc.mnc{mnc:0>3}.mcc{mcc}.3gppnetwork.org")
                ),
                "nFPLMNID": {"mcc": mcc, "mnc": mnc},
            },
            "invocationTimeStamp": stamp,
            "invocationSequenceNumber": self.seq,
            "multipleUnitUsage": units,
            "pDUSessionChargingInformation": {
                "chargingId": self.charging_id,
                "pduSessionInformation": {
                    "pduSessionID": 5,
                    "pduType": "IPV4V6",
                    "dnnId": "internet",
                    "ratType": "NR",
                    "networkSlicingInfo": {"sNSSAI": {"sst": 1}},
                    "servingCNPlmnId": {"mcc": mcc, "mnc": mnc},
                },
            },
        }
        if self.subscriber.supi:
            body["subscriberIdentifier"] = self.subscriber.supi
        if self.subscriber.gpsi:
            body["pDUSessionChargingInformation"]["userInformation"] = {
                "servedGPSI": self.subscriber.gpsi
            }
        self.seq += 1
        return body


class Simulation:
    def __init__(self, client: httpx.AsyncClient, pace: Pace) -> None:
        self.client, self.pace = client, pace
        self.figures = Figures()
        self._stop = asyncio.Event()

    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()

    async def pause(self, seconds: float) -> None:
        """Sleep, but wake at once when the run ends."""
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except TimeoutError:
            pass

    async def post(self, kind: str, url: str, body: dict[str, Any]) -> httpx.Response | None:
        """Send one request; send it once more (same body and sequence number) if the server did not
        answer, as tongka answers a retransmission from what it kept. None when it never answered."""
        for attempt in range(2):
            if attempt:
                body["retransmissionIndicator"] = True
            started = time.monotonic()
            try:
                answer = await self.client.post(url, json=body)
            except httpx.TransportError:
                self.figures.errors += 1
                continue
            self.figures.requests[kind] += 1
            self.figures.latencies.append(time.monotonic() - started)
            if answer.status_code >= 500:
                self.figures.errors += 1
                return None
            return answer
        return None


@dataclass(frozen=True)
class ClientTLS:
    """What an SMF holds for TLS towards the CHF: the CA that issued the CHF's certificate (None: the
    system's), and its own certificate and key (PEM) where the CHF asks for one (mutual TLS)."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None


def connect(nchf_url: str, tls: ClientTLS | None = None) -> httpx.AsyncClient:
    """An SMF's client of the Nchf listener: HTTP/2 only; on http:// h2c with prior knowledge, on
    https:// TLS with ALPN h2. No proxy from the environment: h2c goes to the CHF itself."""
    verify: ssl.SSLContext | bool = True
    if tls is not None and nchf_url.startswith("https://"):
        verify = ssl.create_default_context(cafile=tls.ca)
        if tls.cert is not None:
            verify.load_cert_chain(tls.cert, tls.key)
    return httpx.AsyncClient(
        base_url=nchf_url, http1=False, http2=True, verify=verify, trust_env=False, timeout=10
    )


SMF_INSTANCE_ID = "8c1f2e3d-5a6b-4c7d-8e9f-0a1b2c3d4e5f"  # the simulated SMF's NF instance id


async def authenticate(client: httpx.AsyncClient, nrf_url: str) -> None:
    """Get an access token from the NRF (Nnrf_AccessToken, TS 29.510), as an SMF does before its first
    request to a CHF, and send it with every request. In dev, tongka's Nchf listener plays the NRF."""
    answer = await client.post(
        f"{nrf_url.rstrip('/')}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "nfInstanceId": SMF_INSTANCE_ID,
            "nfType": "SMF",
            "targetNfType": "CHF",
            "scope": "nchf-convergedcharging",
        },
    )
    if answer.status_code != 200:
        raise RuntimeError(
            f"the NRF at {nrf_url} gave no access token: {answer.status_code} {answer.text[:200]}"
        )
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"


async def simulate(
    phones: list[Subscriber],
    seconds: float,
    *,
    nchf_url: str = NCHF_URL,
    nrf_url: str | None = None,
    tls: ClientTLS | None = None,
    client: httpx.AsyncClient | None = None,
    out: TextIO | None = None,
    pace: Pace = Pace(),
    seed: int | None = None,
) -> Figures:
    """Run `phones` for `seconds` against the Nchf listener at `nchf_url` (or through `client`), printing a
    live figure every second to `out`. Cancelling it (Ctrl-C) ends the run early and still releases every session."""
    own = client is None
    if client is None:
        client = connect(nchf_url, tls)
        try:
            await authenticate(client, nrf_url or nchf_url)
        except BaseException:
            await client.aclose()
            raise
    sim = Simulation(client, pace)
    rng = random.Random(seed)
    tasks = [asyncio.create_task(Phone(sim, p, random.Random(rng.random())).live()) for p in phones]
    ticker = asyncio.create_task(_show(sim, out)) if out else None
    try:
        await sim.pause(seconds)
    except (
        asyncio.CancelledError
    ):  # Ctrl-C: asyncio.run cancels this task; end the run, releasing every session
        task = asyncio.current_task()
        if task:
            task.uncancel()
        sim.figures.interrupted = True
        if out:
            print("\ninterrupted: releasing the open sessions", file=out, flush=True)
    finally:
        sim.stop()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(
                outcome, Exception
            ):  # a bug here, not the server's: say so, keep the summary
                sim.figures.errors += 1
                print(f"a phone stopped: {outcome!r}", file=sys.stderr)
        if ticker:
            ticker.cancel()
        if own:
            await client.aclose()
    return sim.figures


async def _show(sim: Simulation, out: TextIO) -> None:
    """A line a second: rewritten in place on a terminal, one after the other elsewhere."""
    tty = out.isatty()
    last_total, last_at = 0, time.monotonic()
    while True:
        await asyncio.sleep(1)
        total, now = sum(sim.figures.requests.values()), time.monotonic()
        line = sim.figures.line((total - last_total) / max(now - last_at, 1e-9))
        last_total, last_at = total, now
        print(f"\r\x1b[K{line}" if tty else line, end="" if tty else "\n", file=out, flush=True)


def run(
    phones: list[Subscriber],
    seconds: float,
    nchf_url: str,
    *,
    tls: ClientTLS | None = None,
    seed: int | None = None,
    out: TextIO = sys.stdout,
    nrf_url: str | None = None,
) -> Figures:
    """The command line's entry: run, then print the summary."""
    figures = asyncio.run(
        simulate(phones, seconds, nchf_url=nchf_url, nrf_url=nrf_url, tls=tls, out=out, seed=seed)
    )
    print(
        ("\n" if out.isatty() else "") + figures.summary(len(phones), nchf_url),
        file=out,
        flush=True,
    )
    return figures


def _cause(answer: httpx.Response) -> str:
    """A refusal's 3GPP cause, from its ProblemDetails."""
    try:
        return str(answer.json().get("cause") or answer.status_code)
    except ValueError:
        return str(answer.status_code)
