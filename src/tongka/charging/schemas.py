"""The subset of 3GPP TS 32.291 (Nchf_ConvergedCharging, API v3) that tongka reads and answers.

Real requests carry many more fields (location, QoS, slice, triggers, PDU address):
every model accepts and keeps them (`extra="allow"`) and tongka ignores them. Names
are the specification's, camelCase as on the wire.

Bounds (a message beyond them is a 400 ProblemDetails at parse): a volume is at most
`MAX_VOLUME` bytes, and no list, read or not, has more than `MAX_LIST` items. So one
message reports at most 64 x 64 x 2^44 = 2^56 bytes and a batch of `nchf.MAX_BATCH` (64)
messages 2^62: no sum of a batch overflows a signed 64-bit column.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field

# 16 TiB in one container: 10 Gbit/s for almost four hours, where a grant is valid 10 minutes
# (the Uint64 of TS 29.571 would overflow the database's signed 64-bit columns).
MAX_VOLUME = 2**44
# Rating groups in a message, containers in a unit usage, triggers...: a handful in real traffic.
MAX_LIST = 64

Uint32 = Annotated[int, Field(strict=True, ge=0, le=2**32 - 1)]
Volume = Annotated[int, Field(strict=True, ge=0, le=MAX_VOLUME)]


def _bounded(value: Any) -> Any:
    if isinstance(value, list) and len(value) > MAX_LIST:
        raise ValueError(f"at most {MAX_LIST} items")
    return value


class _Wire(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    # The fields tongka does not read are kept as they came, but no list among them is long.
    __pydantic_extra__: dict[str, Annotated[Any, AfterValidator(_bounded)]] = Field(init=False)


class PlmnId(_Wire):
    mcc: str = Field(pattern=r"^\d{3}$")
    mnc: str = Field(pattern=r"^\d{2,3}$")

    @property
    def plmn(self) -> str:
        return f"{self.mcc}-{self.mnc}"


class PDUSessionInformation(_Wire):
    servingCNPlmnId: PlmnId | None = None


class UserInformation(_Wire):
    servedGPSI: str | None = None


class Tai(_Wire):
    plmnId: PlmnId | None = None


class RadioLocation(
    _Wire
):  # NrLocation, EutraLocation (TS 29.571): the tracking area names the serving PLMN
    tai: Tai | None = None


class UserLocation(_Wire):
    nrLocation: RadioLocation | None = None
    eutraLocation: RadioLocation | None = None

    @property
    def plmn(self) -> str | None:
        for where in (self.nrLocation, self.eutraLocation):
            if where and where.tai and where.tai.plmnId:
                return where.tai.plmnId.plmn
        return None


class PDUSessionChargingInformation(_Wire):
    userInformation: UserInformation | None = None
    userLocationinfo: UserLocation | None = None
    pduSessionInformation: PDUSessionInformation | None = None


class RequestedUnit(_Wire):
    totalVolume: Volume | None = None


class Trigger(_Wire):
    triggerType: str | None = None
    triggerCategory: str


PLMN_CHANGE = "PLMN_CHANGE"


class UsedUnitContainer(_Wire):
    totalVolume: Volume | None = None
    localSequenceNumber: Uint32
    # PLMN_CHANGE among them: the container was closed when the phone changed network, so its
    # usage (and that of the containers before it) was on the network before.
    triggers: list[Trigger] = Field(default_factory=list, max_length=MAX_LIST)

    @property
    def closed_by_plmn_change(self) -> bool:
        return any(t.triggerType == PLMN_CHANGE for t in self.triggers)


class MultipleUnitUsage(_Wire):
    ratingGroup: Uint32
    requestedUnit: RequestedUnit | None = None
    # "UsedUnitContainer" is how API v2 (Rel-15) spelled it.
    usedUnitContainer: list[UsedUnitContainer] = Field(
        default_factory=list,
        max_length=MAX_LIST,
        validation_alias=AliasChoices("usedUnitContainer", "UsedUnitContainer"),
    )


class ChargingDataRequest(_Wire):
    """What the network sends on create, update and release."""

    nfConsumerIdentification: dict[str, Any]
    invocationTimeStamp: datetime
    invocationSequenceNumber: Uint32
    subscriberIdentifier: str | None = None  # SUPI: "imsi-<digits>"
    retransmissionIndicator: bool = False
    notifyUri: str | None = Field(
        default=None, max_length=2048
    )  # outbound.MAX_URI, the column's length
    multipleUnitUsage: list[MultipleUnitUsage] = Field(default_factory=list, max_length=MAX_LIST)
    pDUSessionChargingInformation: PDUSessionChargingInformation | None = None

    def identities(self) -> list[str]:
        """The subscriber's identities in the order tried: SUPI (or GPSI) in subscriberIdentifier, then servedGPSI."""
        info = self.pDUSessionChargingInformation
        gpsi = info.userInformation.servedGPSI if info and info.userInformation else None
        return [i for i in (self.subscriberIdentifier, gpsi) if i]

    def plmn(self) -> str | None:
        """The serving network now: servingCNPlmnId, else the PLMN of the user's tracking area."""
        info = self.pDUSessionChargingInformation
        pdu = info.pduSessionInformation if info else None
        if pdu and pdu.servingCNPlmnId:
            return pdu.servingCNPlmnId.plmn
        return info.userLocationinfo.plmn if info and info.userLocationinfo else None


# REQUIRED in ChargingDataRequest: a missing or wrong one is MANDATORY_IE_*, any other OPTIONAL_IE_*.
MANDATORY = {"nfConsumerIdentification", "invocationTimeStamp", "invocationSequenceNumber"}


# --- answers (documentation of what the routes return) ------------------------------------


class GrantedUnit(BaseModel):
    totalVolume: int


class RedirectServer(BaseModel):
    redirectAddressType: Literal[
        "IPV4", "IPV6", "URL", "URI"
    ]  # TS 32.291 RedirectAddressType, not TS 29.512 (SIP_URI)
    redirectServerAddress: str


class FinalUnitIndication(BaseModel):
    finalUnitAction: Literal["TERMINATE", "REDIRECT", "RESTRICT_ACCESS"]
    redirectServer: RedirectServer | None = None


class ArmedTrigger(BaseModel):
    triggerType: str
    triggerCategory: Literal["IMMEDIATE_REPORT", "DEFERRED_REPORT"]


class MultipleUnitInformation(BaseModel):
    resultCode: Literal["SUCCESS", "QUOTA_LIMIT_REACHED", "USER_UNKNOWN", "END_USER_SERVICE_DENIED"]
    ratingGroup: int
    grantedUnit: GrantedUnit | None = None
    validityTime: int | None = None
    volumeQuotaThreshold: int | None = None
    finalUnitIndication: FinalUnitIndication | None = None


class ChargingDataResponse(BaseModel):
    invocationTimeStamp: datetime
    invocationSequenceNumber: int
    multipleUnitInformation: list[MultipleUnitInformation] = Field(default_factory=list)
    triggers: list[ArmedTrigger] = Field(
        default_factory=list
    )  # PLMN_CHANGE, IMMEDIATE_REPORT: report at a crossing


class InvalidParam(BaseModel):
    param: str  # a JSON pointer
    reason: str | None = None


class ProblemDetails(BaseModel):
    """TS 29.571 ProblemDetails, with the application error in `cause`."""

    title: str
    status: int
    detail: str
    cause: str
    invalidParams: list[InvalidParam] | None = None
