"""Command line: ``flask --app app users|proposals|bootstrap ...`` (``db upgrade`` comes from Flask-Migrate)."""
from __future__ import annotations

import secrets

import click
import sqlalchemy as sa
from flask.cli import AppGroup, with_appcontext

from auth.accounts import (
    AccountError,
    add_collaborator,
    create_proposal,
    create_user,
    find_user,
    regenerate_token,
    update_proposal_details,
)
from db import db
from db.models import Proposal, User

users_cli = AppGroup("users", help="Manage user accounts.")
proposals_cli = AppGroup("proposals", help="Manage observing proposals.")


def _commit_or_fail(action):
    """Run ``action``; on a refusal roll back (nothing half-written) and exit with its message."""
    try:
        result = action()
        db.session.commit()
        return result
    except AccountError as error:
        db.session.rollback()
        raise click.ClickException(str(error)) from None


@users_cli.command("create")
@click.option("--username", required=True)
@click.option("--email", required=True)
@click.option("--password", required=True)
@click.option("--first", "first_name", default="")
@click.option("--last", "last_name", default="")
@click.option("--partner", default="OTHER")
@click.option("--staff", is_flag=True)
@click.option("--superuser", is_flag=True)
def users_create(username, email, password, first_name, last_name, partner, staff, superuser):
    """Create a user with a password."""
    user = _commit_or_fail(lambda: create_user(
        username=username, email=email, password=password, first_name=first_name,
        last_name=last_name, partner=partner, is_staff=staff, is_superuser=superuser))
    click.echo(f"Created user {user.username} (id {user.id}).")


@users_cli.command("token")
@click.argument("username")
def users_token(username):
    """Print a new API token for USERNAME (the old one stops working)."""
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"No user '{username}'.")
    key = regenerate_token(user)
    db.session.commit()
    click.echo(key)


@proposals_cli.command("create")
@click.option("--soar-id", required=True)
@click.option("--semester", required=True)
@click.option("--pi", "pi_username", required=True, help="username of the PI")
@click.option("--title", required=True)
@click.option("--abstract", default="")
def proposals_create(soar_id, semester, pi_username, title, abstract):
    """Create an observing proposal."""
    pi = find_user(pi_username)
    if pi is None:
        raise click.ClickException(f"No user '{pi_username}'.")
    proposal = _commit_or_fail(lambda: create_proposal(
        soar_id=soar_id, semester=semester, pi=pi, title=title, abstract=abstract))
    click.echo(f"Created proposal {proposal.soar_id} (id {proposal.id}).")


@proposals_cli.command("add-collaborator")
@click.argument("soar_id")
@click.argument("username")
def proposals_add_collaborator(soar_id, username):
    """Add USERNAME as a collaborator of proposal SOAR_ID."""
    proposal = db.session.scalar(sa.select(Proposal).where(Proposal.soar_id == soar_id))
    if proposal is None:
        raise click.ClickException(f"No proposal '{soar_id}'.")
    user = find_user(username)
    if user is None:
        raise click.ClickException(f"No user '{username}'.")
    _commit_or_fail(lambda: add_collaborator(proposal, user))
    click.echo(f"Added {user.username} to {proposal.soar_id}.")


@proposals_cli.command("set")
@click.argument("soar_id")
@click.option("--pi", "pi_username", help="username or e-mail of the new PI")
@click.option("--semester", help="e.g. 2026B")
@click.option("--title")
def proposals_set(soar_id, pi_username, semester, title):
    """Set the PI, semester or title of proposal SOAR_ID (e.g. one created from a FITS header)."""
    proposal = db.session.scalar(sa.select(Proposal).where(Proposal.soar_id == soar_id))
    if proposal is None:
        raise click.ClickException(f"No proposal '{soar_id}'.")
    changes = {name: value for name, value in (("semester", semester), ("title", title)) if value is not None}
    if pi_username is not None:
        pi = find_user(pi_username)
        if pi is None:
            raise click.ClickException(f"No user '{pi_username}'.")
        changes["pi"] = pi.id
    try:
        applied = update_proposal_details(proposal, changes, None)
    except AccountError as error:
        raise click.ClickException(str(error)) from None
    for change in applied:
        click.echo(f"{proposal.soar_id}: {change['field']} {change['old']!r} -> {change['new']!r}")
    if not applied:
        click.echo(f"{proposal.soar_id}: nothing to change.")


@click.command("bootstrap")
@click.option("--username", default="admin")
@with_appcontext
def bootstrap_command(username):
    """On first start: create a superuser and print its password once."""
    if db.session.scalar(sa.select(sa.func.count(User.id)).where(User.is_superuser)):
        click.echo("A superuser exists already.")
        return
    password = secrets.token_urlsafe(12)
    _commit_or_fail(lambda: create_user(username=username, email=f"{username}@localhost.localdomain",
                                        password=password, first_name="GSP", last_name="Administrator",
                                        is_superuser=True))
    click.echo(f"Created superuser '{username}' with password: {password}")
    click.echo("This password is shown only once; change it from the user panel.")
