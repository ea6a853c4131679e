"""The catalogue and the accounts: every table of GSP Live."""
from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from flask_login import UserMixin
from sqlalchemy.orm import Mapped, mapped_column, relationship

from db.extension import db
from pipeline.settings import ReductionSettings


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


Timestamp = sa.DateTime(timezone=True)

collaborators = sa.Table(
    "collaborators",
    db.metadata,
    sa.Column("proposal_id", sa.ForeignKey("proposals.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(sa.String(150), unique=True)
    first_name: Mapped[str] = mapped_column(sa.String(150), default="")
    last_name: Mapped[str] = mapped_column(sa.String(150), default="")
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    partner: Mapped[str] = mapped_column(sa.String(40), default="OTHER")
    is_staff: Mapped[bool] = mapped_column(default=False)
    is_superuser: Mapped[bool] = mapped_column(default=False)
    is_active_account: Mapped[bool] = mapped_column("is_active", default=True)
    password_hash: Mapped[str | None] = mapped_column(sa.String(256))
    api_token_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    # Part of the session's user id: bumped at logout and password changes, so every older session
    # cookie (copied, stolen, on another machine) stops working.
    session_version: Mapped[int] = mapped_column(default=1)
    date_joined: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_login: Mapped[datetime | None] = mapped_column(Timestamp)
    # Visual preferences (the user panel of the manual).
    theme: Mapped[str] = mapped_column(sa.String(10), default="dark")
    colormap: Mapped[str] = mapped_column(sa.String(20), default="gray")
    plot_format: Mapped[str] = mapped_column(sa.String(12), default="interactive")
    show_saturated: Mapped[bool] = mapped_column(default=False)

    @property
    def is_active(self) -> bool:  # flask-login refuses inactive accounts
        return self.is_active_account

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip() or self.username


# The title of a proposal first seen in a FITS header: a label saying so, until staff give it a PI.
PLACEHOLDER_TITLE = "(created from a FITS header)"


class Proposal(db.Model):
    __tablename__ = "proposals"

    id: Mapped[int] = mapped_column(primary_key=True)
    soar_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    semester: Mapped[str] = mapped_column(sa.String(10), default="")
    title: Mapped[str] = mapped_column(sa.String(300), default="")
    abstract: Mapped[str] = mapped_column(sa.Text, default="")
    pi_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    # A proposal first seen in a FITS header is created as a placeholder staff fill in.
    placeholder: Mapped[bool] = mapped_column(default=False)
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    pi: Mapped[User | None] = relationship(foreign_keys=[pi_id])
    collaborators: Mapped[list[User]] = relationship(secondary=collaborators, order_by="User.id")
    settings: Mapped["ProposalSettings"] = relationship(
        back_populates="proposal", uselist=False, cascade="all, delete-orphan"
    )


_DEFAULTS = ReductionSettings()


class ProposalSettings(db.Model):
    """Per-proposal reduction settings; the defaults are the manual's."""

    __tablename__ = "proposal_settings"

    proposal_id: Mapped[int] = mapped_column(
        sa.ForeignKey("proposals.id", ondelete="CASCADE"), primary_key=True
    )
    saturation_threshold: Mapped[float] = mapped_column(default=_DEFAULTS.saturation_threshold)
    cosmic_ray_rejection: Mapped[str] = mapped_column(sa.String(12), default=_DEFAULTS.cosmic_ray_rejection)
    technique: Mapped[str] = mapped_column(sa.String(16), default=_DEFAULTS.technique)
    ignore_bias: Mapped[bool] = mapped_column(default=_DEFAULTS.ignore_bias)
    ignore_flats: Mapped[bool] = mapped_column(default=_DEFAULTS.ignore_flats)
    min_bias: Mapped[int] = mapped_column(default=_DEFAULTS.min_bias)
    min_flats: Mapped[int] = mapped_column(default=_DEFAULTS.min_flats)
    flat_normalization: Mapped[str] = mapped_column(sa.String(10), default=_DEFAULTS.flat_normalization)
    flat_normalization_order: Mapped[int] = mapped_column(default=_DEFAULTS.flat_normalization_order)
    extraction: Mapped[str] = mapped_column(sa.String(12), default=_DEFAULTS.extraction)
    target_fit_model: Mapped[str] = mapped_column(sa.String(10), default=_DEFAULTS.target_fit_model)
    max_targets: Mapped[int] = mapped_column(default=_DEFAULTS.max_targets)
    flux_calibration: Mapped[bool] = mapped_column(default=_DEFAULTS.flux_calibration)
    flexure_correction: Mapped[bool] = mapped_column(default=_DEFAULTS.flexure_correction)
    telluric_correction: Mapped[bool] = mapped_column(default=_DEFAULTS.telluric_correction)

    proposal: Mapped[Proposal] = relationship(back_populates="settings")

    def as_settings(self) -> ReductionSettings:
        return ReductionSettings(**{name: getattr(self, name) for name in _DEFAULTS.to_dict()})


class File(db.Model):
    """One FITS file: raw (data_type 0) or a product with its lineage."""

    __tablename__ = "files"
    __table_args__ = (
        sa.Index("ix_files_type_id", "data_type", "id"),
        sa.Index("ix_files_proposal_id_id", "proposal_id", "id"),
        sa.Index("ix_files_obstype_id", "obstype", "id"),
        sa.Index("ix_files_date_id", "date", "id"),
        sa.Index("ix_files_last_modified", "last_modified"),
        # Narrow covering indexes for a catalogue of 10^6 files (bench/catalogue.py): newest-first pages
        # and deep offsets walk (id, visibility columns) instead of the wide table; counts of the
        # common filters and of a member's proposals are index-only range scans.
        sa.Index("ix_files_id_type_proposal", "id", "data_type", "proposal_id"),
        sa.Index("ix_files_proposal_type_id", "proposal_id", "data_type", "id"),
        sa.Index("ix_files_obstype_grating_id", "obstype", "grating", "id", "date", "data_type", "proposal_id"),
        # change_stamp: the newest change of one proposal in one lookup.
        sa.Index("ix_files_proposal_modified", "proposal_id", "last_modified"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_modified: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, onupdate=utcnow)
    file_name: Mapped[str] = mapped_column(sa.String(255), index=True)
    directory_name: Mapped[str] = mapped_column(sa.String(1024))
    full_path: Mapped[str] = mapped_column(sa.String(1280), unique=True)
    parent_file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("files.id", ondelete="SET NULL"), index=True)
    original_file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("files.id", ondelete="SET NULL"), index=True)
    proposal_id: Mapped[int | None] = mapped_column(sa.ForeignKey("proposals.id", ondelete="SET NULL"))
    data_type: Mapped[int] = mapped_column(default=0)
    obstype: Mapped[str] = mapped_column(sa.String(20), default="")
    object: Mapped[str] = mapped_column(sa.String(100), default="")
    filter: Mapped[str] = mapped_column(sa.String(40), default="")
    filter_2: Mapped[str] = mapped_column(sa.String(40), default="")
    grating: Mapped[str] = mapped_column(sa.String(40), default="")
    slit: Mapped[str] = mapped_column(sa.String(40), default="")
    wavmode: Mapped[str] = mapped_column(sa.String(40), default="")
    roi: Mapped[str] = mapped_column(sa.String(40), default="")
    technique: Mapped[str] = mapped_column(sa.String(16), default="")
    instconf: Mapped[str] = mapped_column(sa.String(10), default="")
    cam_targ: Mapped[str] = mapped_column(sa.String(20), default="")
    grt_targ: Mapped[str] = mapped_column(sa.String(20), default="")
    obsra: Mapped[str] = mapped_column(sa.String(20), default="")
    obsdec: Mapped[str] = mapped_column(sa.String(20), default="")
    gain: Mapped[str] = mapped_column(sa.String(20), default="")
    rdnoise: Mapped[str] = mapped_column(sa.String(20), default="")
    saturation_value: Mapped[int | None] = mapped_column()
    exptime: Mapped[float | None] = mapped_column()
    date: Mapped[str] = mapped_column(sa.String(10), default="")  # night date, YYYY-MM-DD
    date_obs: Mapped[datetime | None] = mapped_column(Timestamp)
    observation_id: Mapped[int | None] = mapped_column()
    configuration_id: Mapped[int | None] = mapped_column()
    block_id: Mapped[int | None] = mapped_column()
    image_id: Mapped[int | None] = mapped_column()
    normalized: Mapped[bool] = mapped_column(default=False)
    target: Mapped[int | None] = mapped_column()  # extracted target number (data_type 3+)
    version: Mapped[int] = mapped_column(default=1)
    snr: Mapped[float | None] = mapped_column()  # 1D products: median S/N per pixel over the central half
    calibrations: Mapped[dict | None] = mapped_column(sa.JSON)  # what was used, and why
    classification: Mapped[dict | None] = mapped_column(sa.JSON)  # pipeline.headers.classify() output
    # Processing state: ingested, queued, running, done, failed (with state_reason).
    state: Mapped[str] = mapped_column(sa.String(12), default="ingested")
    state_reason: Mapped[str] = mapped_column(sa.Text, default="")
    ingested_at: Mapped[datetime | None] = mapped_column(Timestamp)
    reduced_at: Mapped[datetime | None] = mapped_column(Timestamp)
    extracted_at: Mapped[datetime | None] = mapped_column(Timestamp)
    calibrated_at: Mapped[datetime | None] = mapped_column(Timestamp)

    proposal: Mapped[Proposal | None] = relationship()
    parent: Mapped["File | None"] = relationship(remote_side=[id], foreign_keys=[parent_file_id])
    original: Mapped["File | None"] = relationship(remote_side=[id], foreign_keys=[original_file_id])


class Comment(db.Model):
    __tablename__ = "comments"

    id: Mapped[int] = mapped_column(primary_key=True)
    file_id: Mapped[int] = mapped_column(sa.ForeignKey("files.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    text: Mapped[str] = mapped_column(sa.Text)
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    user: Mapped[User | None] = relationship()


class LogEntry(db.Model):
    """An important event: ingestion, jobs, logins, settings and collaborator changes (audit)."""

    __tablename__ = "log_entries"
    __table_args__ = (sa.Index("ix_log_entries_event_created", "event", "created"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    level: Mapped[str] = mapped_column(sa.String(10), default="INFO")
    event: Mapped[str] = mapped_column(sa.String(40))
    message: Mapped[str] = mapped_column(sa.Text)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    proposal_id: Mapped[int | None] = mapped_column(sa.ForeignKey("proposals.id", ondelete="SET NULL"), index=True)
    file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("files.id", ondelete="SET NULL"))
    subject: Mapped[str] = mapped_column(sa.String(254), default="")  # e.g. the username a login tried
    remote_addr: Mapped[str] = mapped_column(sa.String(64), default="")
    details: Mapped[dict | None] = mapped_column(sa.JSON)  # audit: field, old, new

    user: Mapped[User | None] = relationship()


class Job(db.Model):
    """One run of a process block: the truth about it (Redis only carries its id, see live/queue.py).

    States: queued (to be sent or sent), running (claimed by a worker, which beats ``heartbeat_at``),
    waiting (parked until what ``waiting_for`` names exists), done, failed (``reason`` says why)."""

    __tablename__ = "jobs"
    __table_args__ = (sa.Index("ix_jobs_state_id", "state", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(40))
    file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("files.id", ondelete="SET NULL"), index=True)
    user_id: Mapped[int | None] = mapped_column(sa.ForeignKey("users.id", ondelete="SET NULL"))
    params: Mapped[dict | None] = mapped_column(sa.JSON)
    state: Mapped[str] = mapped_column(sa.String(12), default="queued")
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    waiting_for: Mapped[str] = mapped_column(sa.String(200), default="")
    # Jobs with the same key never run at once (the master of one group of frames).
    serial_key: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    result: Mapped[dict | None] = mapped_column(sa.JSON)
    attempts: Mapped[int] = mapped_column(default=0)  # times a worker claimed it
    lost_runs: Mapped[int] = mapped_column(default=0)  # runs whose worker died before it finished
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(Timestamp)
    heartbeat_at: Mapped[datetime | None] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)
    not_before: Mapped[datetime | None] = mapped_column(Timestamp)  # a retry after an error of the environment

    file: Mapped[File | None] = relationship()

    @property
    def rq_id(self) -> str:
        """The id of the RQ job that carries this attempt (one per claim, so a re-send replaces it)."""
        return f"gsp-{self.id}-{self.attempts}"


class Subscription(db.Model):
    """A user's notifications of one proposal's events: a signed webhook and/or an e-mail digest
    (auth/subscriptions.py makes them, live/notify.py delivers them)."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    proposal_id: Mapped[int] = mapped_column(sa.ForeignKey("proposals.id", ondelete="CASCADE"), index=True)
    events: Mapped[list] = mapped_column(sa.JSON)
    url: Mapped[str] = mapped_column(sa.String(2048))
    format: Mapped[str] = mapped_column(sa.String(10), default="json")
    email: Mapped[bool] = mapped_column(default=False)
    # The HMAC key both sides hold to sign and check a webhook's body: kept as is (it must sign), shown once.
    secret: Mapped[str] = mapped_column(sa.String(64))
    paused: Mapped[bool] = mapped_column(default=False)  # by its owner, or after a day of failed deliveries
    failing_since: Mapped[datetime | None] = mapped_column(Timestamp)  # the first failed attempt since a success
    last_digest_at: Mapped[datetime | None] = mapped_column(Timestamp)  # the newest e-mail digest sent (claimed)
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)

    user: Mapped[User] = relationship()
    proposal: Mapped[Proposal] = relationship()


class Delivery(db.Model):
    """One event told to one subscription over one channel (webhook or e-mail): the outbox row, written in the
    transaction of what it tells of, sent by the job layer until acknowledged (live/notify.py)."""

    __tablename__ = "deliveries"
    __table_args__ = (sa.UniqueConstraint("subscription_id", "channel", "key"),
                      sa.Index("ix_deliveries_state_due", "state", "due_at"))

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(sa.String(36), unique=True)  # X-GSP-Delivery: the same for every retry
    subscription_id: Mapped[int] = mapped_column(sa.ForeignKey("subscriptions.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(sa.String(8))  # webhook, email
    event: Mapped[str] = mapped_column(sa.String(20))  # spectrum.ready, frame.failed, night.ready
    key: Mapped[str] = mapped_column(sa.String(80))  # what it tells of: told once per subscription and channel
    file_id: Mapped[int | None] = mapped_column(sa.ForeignKey("files.id", ondelete="SET NULL"))
    details: Mapped[dict | None] = mapped_column(sa.JSON)  # a failure's reason, a night's date
    state: Mapped[str] = mapped_column(sa.String(10), default="pending")  # pending, delivered, failed, dropped
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    attempts: Mapped[int] = mapped_column(default=0)
    due_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)  # the next attempt; a claim moves it on
    created: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp)

    subscription: Mapped[Subscription] = relationship()
    file: Mapped[File | None] = relationship()


class DeliveryAttempt(db.Model):
    """One try of a delivery: when, the receiver's HTTP status (None: no answer) and what went wrong."""

    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[int] = mapped_column(sa.ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    status: Mapped[int | None] = mapped_column()
    error: Mapped[str] = mapped_column(sa.Text, default="")

    delivery: Mapped[Delivery] = relationship()
