"""POST /api/email/: staff send a notification through the one mail sender (auth.mail)."""
from __future__ import annotations

import re
import smtplib

from flask import jsonify, request
from flask_login import current_user

from api import ApiError, blueprint
from api.schemas import TOKEN_SECURITY, body_schema, error, json_content
from auth.accounts import AccountError, normalize_email
from auth.mail import send_mail
from auth.permissions import can_manage_users
from db import db
from db.events import log_event

MAX_RECIPIENTS = 100
MAX_SUBJECT = 200
MAX_MESSAGE = 100_000
FIELDS = ("to", "email", "subject", "message")


def _character_class(characters: str) -> str:
    """A regular expression class of anything but ``characters``, read alike by Python and JSON Schema."""
    return "[^" + "".join(f"\\u{ord(character):04x}" for character in characters) + "]"


# What str.splitlines breaks a line at (an e-mail header may hold none: the mail library refuses it) and what
# str.strip takes for blank, spelt out: the OpenAPI patterns below then say exactly what the server checks.
LINE_BREAKS = "".join(character for character in map(chr, range(0x3001)) if len(f"a{character}a".splitlines()) > 1)
BLANKS = "".join(filter(str.isspace, map(chr, range(0x3001))))
ONE_LINE = f"^{_character_class(LINE_BREAKS)}*{_character_class(BLANKS)}{_character_class(LINE_BREAKS)}*$"
NOT_BLANK = _character_class(BLANKS)


def _recipients(data: dict) -> list[str]:
    if "to" in data and "email" in data:
        raise ApiError("Give the recipients as 'to' or 'email', not both.")
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
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ApiError(f"Unknown field(s): {', '.join(map(repr, unknown))}; the body takes "
                       f"{', '.join(map(repr, FIELDS))}.")
    to = _recipients(data)
    subject, message = data.get("subject"), data.get("message")
    if not isinstance(subject, str) or not subject.strip():
        raise ApiError("'subject' is required.")
    if not re.fullmatch(ONE_LINE, subject) or len(subject) > MAX_SUBJECT:
        raise ApiError(f"'subject' must be one line of at most {MAX_SUBJECT} characters.")
    if not isinstance(message, str) or not re.search(NOT_BLANK, message):
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


_ADDRESS = {"type": "string", "format": "email", "maxLength": 254}

_BODY = body_schema({
    "to": {"type": "array", "items": _ADDRESS, "minItems": 1, "maxItems": MAX_RECIPIENTS},
    "email": _ADDRESS,
    "subject": {"type": "string", "maxLength": MAX_SUBJECT, "pattern": ONE_LINE, "description": "One line."},
    "message": {"type": "string", "maxLength": MAX_MESSAGE, "pattern": NOT_BLANK, "description": "Plain-text body."}},
    ("subject", "message"),
    example={"to": ["pi@example.org"], "subject": "New data", "message": "Your spectra of tonight are reduced."})
_BODY["content"]["application/json"]["schema"]["oneOf"] = [{"required": ["to"]}, {"required": ["email"]}]

OPENAPI_PATHS: dict = {
    "/api/email/": {"post": {
        "tags": ["email"], "operationId": "api_email_create", "security": TOKEN_SECURITY,
        "summary": "Sends e-mail notifications (staff only)",
        "description": "Give the recipients as 'to' (a list) or one as 'email'.",
        "requestBody": _BODY,
        "responses": {
            "200": json_content({"type": "object", "required": ["sent", "to", "subject"], "properties": {
                "sent": {"type": "boolean"}, "to": {"type": "array", "items": {"type": "string"}},
                "subject": {"type": "string"}}}, "Sent."),
            "400": error("Missing or invalid field, or an unknown one."),
            "403": error("Not staff."),
            "502": error("The mail server refused or could not be reached."),
        }}},
}
