from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, EmailStr, Field

from tongka.account.identity import DOCUMENT_TYPES
from tongka.i18n import Language


class AccountCreate(BaseModel):
    username: str = Field(min_length=3, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    password: str = Field(min_length=1, max_length=256)
    email: EmailStr
    language: Language = "zh-Hant"
    # Where the customer lives: some payment methods and offers are for one region only.
    region: Literal["hk", "mainland"] = "hk"


class AccountOut(BaseModel):
    id: uuid.UUID
    username: str
    email: str
    language: str
    region: str
    created_at: datetime


class PasswordChange(BaseModel):
    current_password: str = Field(min_length=1, max_length=256)
    new_password: str = Field(min_length=1, max_length=256)


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class RealNameOut(BaseModel):
    document_type: str
    document_country: str | None
    document_number: str = Field(description="masked: never shown in full")
    holder_name: str = Field(description="masked")


class LineOut(BaseModel):
    id: uuid.UUID
    iccid: str
    numbers: list[str]
    status: str
    bound_at: datetime | None
    real_name: RealNameOut | None


class BindRequest(BaseModel):
    number: str = Field(
        max_length=32, description="E.164 (+85291234567) or a national mobile number"
    )


class BindRequested(BaseModel):
    number: str
    code_expires_at: datetime
    code_length: int = 8


class BindConfirm(BaseModel):
    number: str = Field(max_length=32)
    code: str = Field(pattern=r"^\s*[0-9]{8}\s*$")


class RealNameIn(BaseModel):
    document_type: str = Field(pattern="^(" + "|".join(DOCUMENT_TYPES) + ")$")
    document_number: str = Field(min_length=4, max_length=32)
    holder_name: str = Field(min_length=1, max_length=100)
    document_country: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")


class ZoneBalanceOut(BaseModel):
    remaining_bytes: int
    total_bytes: int
    reserved_bytes: int
    owed_bytes: int  # used beyond the packs with overage off or exhausted: taken from the next pack
    bucket_count: int
    next_expiry: datetime | None


class BucketOut(BaseModel):
    id: uuid.UUID
    zone: str
    total_bytes: int
    remaining_bytes: int
    reserved_bytes: int
    valid_from: datetime
    expires_at: datetime


class BalanceOut(BaseModel):
    line_id: uuid.UUID
    zones: dict[str, ZoneBalanceOut]
    buckets: list[BucketOut]
    as_of: datetime
    unit_note: str


class AntiPhishingIn(BaseModel):
    """The word every genuine message will carry: 2 to 16 letters, digits or Chinese characters;
    null or "" removes it."""

    code: str | None = Field(default=None, max_length=16)


class AntiPhishingOut(BaseModel):
    code: str | None
