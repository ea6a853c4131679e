"""Records as the API (and the pages) show them, with the manual's field names."""
from __future__ import annotations

from datetime import datetime, timezone

from db.models import File, Proposal, User


def iso_time(value: datetime | None) -> str | None:
    """ISO 8601 with its time zone (UTC): SQLite hands back naive datetimes, JSON readers need the zone."""
    if value is None:
        return None
    return (value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value).isoformat()


def _text(value) -> str:
    return "" if value is None else str(value)


SERVER_PATHS = ("directory_name", "full_path")  # where the file lives on the server


def file_to_dict(file: File, *, server_paths: bool) -> dict:
    """The file as the API shows it; its ``SERVER_PATHS`` only when ``server_paths`` (a permission the caller
    decides: auth.permissions.can_see_server_paths)."""
    original = file.original or file
    parent = file.parent or file
    record = {
        "id": file.id,
        "created": iso_time(file.created),
        "last_modified": iso_time(file.last_modified),
        "original_file": original.file_name,
        "original_file_id": original.id,
        "parent_file": parent.file_name,
        "parent_file_id": parent.id,
        "file_name": file.file_name,
        "directory_name": file.directory_name,
        "full_path": file.full_path,
        "obstype": file.obstype,
        "object": file.object,
        "filter": file.filter,
        "filter_2": file.filter_2,
        "grating": file.grating,
        "slit": file.slit,
        "cam_targ": _text(file.cam_targ),
        "grt_targ": _text(file.grt_targ),
        "obsra": file.obsra,
        "obsdec": file.obsdec,
        "gain": _text(file.gain),
        "rdnoise": _text(file.rdnoise),
        "roi": file.roi,
        "wavmode": file.wavmode,
        "proposal_id": file.proposal.soar_id if file.proposal else None,
        "observation_id": file.observation_id,
        "configuration_id": file.configuration_id,
        "block_id": file.block_id,
        "image_id": file.image_id,
        "date": file.date,
        "data_type": str(file.data_type),
        "normalized": file.normalized,
        "technique": file.technique,
        "saturation_value": file.saturation_value,
        # Beyond the manual: processing state, lineage details and stage timestamps.
        "state": file.state,
        "state_reason": file.state_reason,
        "instconf": file.instconf,
        "exptime": file.exptime,
        "date_obs": iso_time(file.date_obs),
        "target": file.target,
        "version": file.version,
        "snr": file.snr,
        "calibrations": file.calibrations or {},
        # {"verdict": "good" | "poor", "why": ...} of the wavelength solution behind a calibrated product
        "wavelength_quality": (file.calibrations or {}).get("wavelength_quality"),
        "ingested_at": iso_time(file.ingested_at),
        "reduced_at": iso_time(file.reduced_at),
        "extracted_at": iso_time(file.extracted_at),
        "calibrated_at": iso_time(file.calibrated_at),
    }
    if not server_paths:
        for name in SERVER_PATHS:
            del record[name]
    return record


def user_to_dict(user: User) -> dict:
    return {
        "id": user.id,
        "username": user.username,
        "last_login": iso_time(user.last_login),
        "first_name": user.first_name,
        "last_name": user.last_name,
        "email": user.email,
        "is_staff": user.is_staff,
        "is_active": user.is_active,
        "date_joined": iso_time(user.date_joined),
    }


def proposal_to_dict(proposal: Proposal) -> dict:
    """Exactly the manual's shape for a proposal."""
    return {
        "id": proposal.id,
        "soar_id": proposal.soar_id,
        "semester": proposal.semester,
        "title": proposal.title,
        "abstract": proposal.abstract,
        "user": user_to_dict(proposal.pi) if proposal.pi else None,
        "collaborators": [user_to_dict(user) for user in proposal.collaborators],
    }
