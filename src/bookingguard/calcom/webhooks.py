"""Cal.com webhook deliveries: the signature and the typed event.

Cal.com signs the raw body with the webhook secret: ``X-Cal-Signature-256`` is
its hex HMAC-SHA256.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "HANDLED_TRIGGERS",
    "OUR_METADATA_KEYS",
    "CalcomAttendeeNoShow",
    "CalcomWebhook",
    "CalcomWebhookPayload",
    "calcom_signature",
    "claims_our_metadata",
    "verify_calcom_signature",
]

HANDLED_TRIGGERS = (
    "BOOKING_CREATED",
    "BOOKING_REQUESTED",
    "BOOKING_REJECTED",
    "BOOKING_RESCHEDULED",
    "BOOKING_CANCELLED",
    "BOOKING_NO_SHOW_UPDATED",
)
#: The metadata keys the booking path writes on every booking it makes (the idempotency
#: key and the Retell call id): a booking carrying one claims to be ours.
OUR_METADATA_KEYS = ("bookingguard_idempotency_key", "retell_call_id")


def claims_our_metadata(metadata: Mapping[str, str]) -> bool:
    """True when a Cal.com booking's metadata says our functions made it."""
    return any(metadata.get(key) for key in OUR_METADATA_KEYS)


_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


def calcom_signature(body: bytes, secret: str) -> str:
    """The hex HMAC-SHA256 of ``body`` that Cal.com sends in ``X-Cal-Signature-256``."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_calcom_signature(body: bytes, signature: str | None, *, secret: str) -> bool:
    """True only for a well-formed signature that matches ``body`` under ``secret``."""
    if not signature or not secret or not _HEX_DIGEST.fullmatch(signature):
        return False
    return hmac.compare_digest(calcom_signature(body, secret), signature.lower())


class CalcomAttendeeNoShow(BaseModel):
    """An attendee of a ``BOOKING_NO_SHOW_UPDATED`` delivery and whether they did not show."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    email: str | None = None
    no_show: bool = Field(default=False, alias="noShow")


class CalcomWebhookPayload(BaseModel):
    """The booking part of a delivery (Cal.com sends many more fields).

    Booking triggers name the booking ``uid``; ``BOOKING_NO_SHOW_UPDATED`` names it
    ``bookingUid`` and lists the attendees with their ``noShow``.
    """

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    uid: str = Field(validation_alias=AliasChoices("uid", "bookingUid"))
    booking_id: int | None = Field(default=None, alias="bookingId")
    event_type_id: int | None = Field(default=None, alias="eventTypeId")
    start_time: datetime | None = Field(default=None, alias="startTime")
    end_time: datetime | None = Field(default=None, alias="endTime")
    status: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    reschedule_uid: str | None = Field(default=None, alias="rescheduleUid")
    from_reschedule: str | None = Field(default=None, alias="fromReschedule")
    rejection_reason: str | None = Field(default=None, alias="rejectionReason")
    attendees: list[CalcomAttendeeNoShow] = Field(default_factory=list)

    @field_validator("metadata", mode="before")
    @classmethod
    def _stringify(cls, value: object) -> dict[str, str]:
        if not isinstance(value, dict):
            return {}
        return {str(key): str(item) for key, item in value.items() if item is not None}

    @property
    def previous_uid(self) -> str | None:
        """For a reschedule: the uid of the booking it replaces."""
        return self.reschedule_uid or self.from_reschedule

    @property
    def no_show(self) -> bool:
        """For a no-show update: some attendee is marked as not having shown up."""
        return any(attendee.no_show for attendee in self.attendees)


class CalcomWebhook(BaseModel):
    """One webhook delivery: ``triggerEvent``, ``createdAt`` and the booking payload."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    trigger_event: str = Field(alias="triggerEvent")
    created_at: datetime | None = Field(default=None, alias="createdAt")
    payload: CalcomWebhookPayload
