"""Through the pages in Debian's chromium: the PI edits the reduction settings (a bad value is
explained at its field and at Save, and the first one is brought into view; a good one saved), adds a collaborator by e-mail; the newcomer sets a password from
the mailed link and logs in to find the proposal."""
import re
from email import message_from_bytes
from pathlib import Path

import pytest

from tests.conftest import ARTIFACTS, PASSWORD, screenshot

pytestmark = pytest.mark.browser


def sign_in(page, base, username, password):
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.locator("#navbar").wait_for()


def test_pi_edits_settings_and_adds_a_collaborator_who_then_logs_in(live_server, page, people, dash_app):
    from db import db
    from db.models import Proposal, User

    dash_app.server.config["PUBLIC_URL"] = live_server
    proposal_id = people["proposal"].id
    sign_in(page, live_server, "pi", PASSWORD)

    # the proposals list, then the cogs icon
    page.click("#navbar >> text=Proposals")
    page.locator(f"#proposal-{proposal_id}").wait_for()
    assert "SOAR2026B-002" not in page.inner_text("#proposals-list")
    screenshot(page, "proposals-list")
    page.click(f"#settings-{proposal_id}")
    page.locator("#settings-form").wait_for()
    assert page.url.endswith(f"/proposals/{proposal_id}?view=settings")

    # a bad value is explained and nothing is saved
    page.fill("#setting-min_bias input", "0")
    page.fill("#setting-flat_normalization_order input", "51")
    page.click("#settings-save")
    page.get_by_text("Nothing was saved").wait_for()
    assert page.inner_text("#setting-min_bias").count("Minimum Number of Bias must be between 1 and 500.") == 1
    assert "Flat Normalization Order must be between 1 and 50." in page.inner_text(
        "#setting-flat_normalization_order")
    # said at the Save button too, and the first wrong field is brought into view, ready to type in
    assert page.locator("#settings-alert li").all_inner_texts() == [
        "Minimum Number of Bias must be between 1 and 500.", "Flat Normalization Order must be between 1 and 50."]
    page.wait_for_function("() => document.activeElement && document.activeElement.closest('#setting-min_bias')")
    top, bottom = page.evaluate("() => { const r = document.querySelector('#setting-min_bias')"
                                ".getBoundingClientRect(); return [r.top, r.bottom]; }")
    assert 0 <= top and bottom <= page.viewport_size["height"]
    page.screenshot(path=str(ARTIFACTS / "proposals-settings-invalid-viewport.png"))  # what the PI sees
    screenshot(page, "proposals-settings-invalid")
    db.session.expire_all()
    assert db.session.get(Proposal, proposal_id).settings.min_bias == 10

    # good values are saved
    page.fill("#setting-min_bias input", "5")
    page.fill("#setting-flat_normalization_order input", "21")
    page.select_option("#setting-cosmic_ray_rejection select", "lacosmic")
    page.check("#setting-ignore_flats input[type=checkbox]")
    page.click("#settings-save")
    page.get_by_text("Saved. Changed:").wait_for()
    assert page.locator(".gsp-setting-error:not(:empty)").count() == 0
    screenshot(page, "proposals-settings-saved")
    db.session.expire_all()
    settings = db.session.get(Proposal, proposal_id).settings
    assert (settings.min_bias, settings.flat_normalization_order, settings.cosmic_ray_rejection,
            settings.ignore_flats) == (5, 21, "lacosmic", True)

    # add a collaborator who has no account yet (the Person+ icon)
    page.click(f"#collaborators-{proposal_id}")
    page.locator("#collaborator-email").wait_for()
    page.fill("#collaborator-email", "nina.vega@example.org")
    page.click("#collaborator-add")
    page.get_by_text("A new account was created").wait_for()
    assert "nina.vega@example.org" in page.inner_text("#collaborator-table")
    assert page.input_value("#collaborator-email") == ""
    screenshot(page, "proposals-collaborators")

    # the change history shows who changed what
    page.get_by_role("tab", name="History").click()
    page.locator("#proposal-history").wait_for()
    page.wait_for_timeout(400)  # let the tab's fade-in finish before the screenshot
    history = page.inner_text("#proposal-history")
    for text in ("Setting changed", "Minimum Number of Bias", "Cosmic ray rejection", "lacosmic",
                 "Collaborator added", "nina.vega@example.org"):
        assert text in history, text
    screenshot(page, "proposals-history")
    page.click("#nav-logout")
    page.wait_for_url(f"{live_server}/login")

    # the newcomer follows the mailed link, sets a password and logs in
    mails = sorted(Path(dash_app.server.config["OUTBOX_DIR"]).glob("*.eml"))
    assert len(mails) == 1
    mail = message_from_bytes(mails[0].read_bytes())
    assert mail["To"] == "nina.vega@example.org"
    link = re.search(rf"{re.escape(live_server)}/set-password/\S+", mail.get_payload(decode=True).decode()).group(0)
    page.goto(link)
    page.fill("#new_password1", "Balmer-Jump-3646")
    page.fill("#new_password2", "Balmer-Jump-3646")
    page.click("#password-submit")
    page.get_by_text("Your password has been set.").wait_for()
    sign_in(page, live_server, "nina.vega", "Balmer-Jump-3646")
    page.goto(f"{live_server}/proposals")
    page.locator(f"#proposal-{proposal_id}").wait_for()
    assert "Quasars" in page.inner_text("#proposals-list")
    # a collaborator sees the settings read-only and the collaborators without buttons
    page.click(f"#settings-{proposal_id}")
    page.locator("#settings-readonly").wait_for()
    assert page.locator("#settings-save").count() == 0
    assert page.locator("#setting-min_bias input").is_disabled()
    assert page.input_value("#setting-min_bias input") == "5"
    screenshot(page, "proposals-settings-readonly")
    page.get_by_role("tab", name="Collaborators").click()
    assert page.locator("#collaborator-add").count() == 0
    assert page.locator("#collaborator-table button").count() == 0
    db.session.expire_all()
    assert db.session.query(User).filter_by(username="nina.vega").one().last_login is not None


def test_staff_add_user_leads_to_add_proposal(live_server, page, people, dash_app):
    from auth.accounts import next_soar_id, semester_of
    from db import db
    from db.models import Proposal, User

    sign_in(page, live_server, "staff", PASSWORD)
    page.click("#nav-management")
    page.click("text=Add User")
    page.wait_for_url(f"{live_server}/management/users/new")
    page.fill("#user-first-name", "Nina")
    page.fill("#user-last-name", "Vega")
    page.fill("#user-email", "nina@example.org")
    page.select_option("#user-partner", "Chile")
    screenshot(page, "proposals-management-add-user")
    page.click("#user-create")
    page.wait_for_url(re.compile(rf"{re.escape(live_server)}/management/proposals/new\?pi=\d+"))
    db.session.expire_all()
    nina = db.session.query(User).filter_by(email="nina@example.org").one()
    assert page.url.endswith(f"?pi={nina.id}")
    page.locator("#proposal-title").wait_for()
    assert "Nina Vega (nina, nina@example.org)" in page.inner_text("#proposal-pi")
    semester = semester_of()
    assert page.input_value("#proposal-semester") == semester
    assert page.input_value("#proposal-soar-id") == next_soar_id(semester)
    expected_soar_id = page.input_value("#proposal-soar-id")
    page.fill("#proposal-title", "Spectra of Be stars")
    page.fill("#proposal-abstract", "Emission lines.")
    screenshot(page, "proposals-management-add-proposal")
    page.click("#proposal-create")
    page.wait_for_url(re.compile(rf"{re.escape(live_server)}/proposals/\d+$"))
    page.locator("#proposal-header-soar-id").wait_for()
    assert page.inner_text("#proposal-header-soar-id") == expected_soar_id
    db.session.expire_all()
    created = db.session.query(Proposal).filter_by(title="Spectra of Be stars").one()
    assert (created.pi_id, created.soar_id) == (nina.id, expected_soar_id)
    assert page.url.endswith(f"/proposals/{created.id}")
    assert page.inner_text("#proposal-header-pi") == "Nina Vega"
    # a non-staff user meets the not-found view on the same routes
    page.click("#nav-logout")
    sign_in(page, live_server, "pi", PASSWORD)
    page.goto(f"{live_server}/management/users")
    page.locator("#not-found").wait_for()
    assert page.locator("#users-card").count() == 0
