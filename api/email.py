"""POST /api/email/: staff send a notification through the one mail sender (auth.mail)."""
from __future__ import annotations

import smtplib

from flask import jsonify, request
from flask_login import current_user

from api import ApiError, blueprint
from auth.accounts import AccountError, normalize_email
from auth.mail import send_mail
from auth.permissions import can_manage_users
from db import db
from db.events import log_event

MAX_RECIPIENTS = 100
MAX_SUBJECT = 200
MAX_MESSAGE = 100_000


def _recipients(data: dict) -> list[str]:
    to = data.get("to", data.get("email"))
    if isinstance(to, str):
        to = [to]
    if not isinstance(to, list) or not to:
        raise ApiError("Give the recipients as 'to' (a list of e-mail addresses) or 'email'.")
    if len(to) > MAX_RECIPIENTS:
        raise ApiError(f"At most {MAX_RECIPIENTS} recipients per message.")
    try:
        addresses = [normalize_email(address) for address in to]
    except AccountError as error:
        raise ApiError(str(error)) from None
    return list(dict.fromkeys(addresses))


@blueprint.post("/email/")
def email_send():
    if not can_manage_users(current_user):
        raise ApiError("Only staff may send e-mail notifications.", 403)
    data = request.get_json(silent=True) if request.is_json else request.form.to_dict(flat=True)
    if not isinstance(data, dict):
        raise ApiError("The body must be a JSON object.")
    to = _recipients(data)
    subject, message = data.get("subject"), data.get("message")
    if not isinstance(subject, str) or not subject.strip():
        raise ApiError("'subject' is required.")
    if "\n" in subject or "\r" in subject or len(subject) > MAX_SUBJECT:
        raise ApiError(f"'subject' must be one line of at most {MAX_SUBJECT} characters.")
    if not isinstance(message, str) or not message.strip():
        raise ApiError("'message' is required.")
    if len(message) > MAX_MESSAGE:
        raise ApiError(f"'message' may be at most {MAX_MESSAGE} characters.")
    try:
        send_mail(to, subject.strip(), message)
    except (smtplib.SMTPException, OSError) as error:
        raise ApiError(f"The mail server refused the message or could not be reached "
                       f"({error.__class__.__name__}).", 502) from None
    log_event("email_sent", f"{current_user.username} sent '{subject.strip()}' to {', '.join(to)}.",
              user=current_user, subject=subject.strip()[:254], details={"to": to, "subject": subject.strip()})
    db.session.commit()
    return jsonify({"sent": True, "to": to, "subject": subject.strip()})


_ERROR = {"type": "object", "properties": {"detail": {"type": "string"}}}

OPENAPI_PATHS: dict = {
    "/api/email/": {"post": {
        "tags": ["email"], "operationId": "api_email_create", "security": [{"Token": []}],
        "summary": "Sends e-mail notifications (staff only)",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"type": "object", "required": ["subject", "message"], "properties": {
                "to": {"type": "array", "items": {"type": "string", "format": "email"},
                       "maxItems": MAX_RECIPIENTS, "description": "Recipients (or give one as 'email')."},
                "email": {"type": "string", "format": "email"},
                "subject": {"type": "string", "maxLength": MAX_SUBJECT},
                "message": {"type": "string", "description": "Plain-text body."}}},
            "example": {"to": ["pi@example.org"], "subject": "New data",
                        "message": "Your spectra of tonight are reduced."}}}},
        "responses": {
            "200": {"description": "Sent.", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"sent": {"type": "boolean"},
                                                 "to": {"type": "array", "items": {"type": "string"}},
                                                 "subject": {"type": "string"}}}}}},
            "400": {"description": "Missing or invalid field.",
                    "content": {"application/json": {"schema": _ERROR}}},
            "401": {"description": "Not authenticated.", "content": {"application/json": {"schema": _ERROR}}},
            "403": {"description": "Not staff.", "content": {"application/json": {"schema": _ERROR}}},
            "502": {"description": "The mail server refused or could not be reached.",
                    "content": {"application/json": {"schema": _ERROR}}},
        }}},
}
