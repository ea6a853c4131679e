"""In Debian's chromium: the Data page's night panel on a constructed night (readiness in words, updated live
when frames arrive); staff set a placeholder proposal's PI, semester and title (its FITS-header label goes);
removing a collaborator asks first (cancel keeps, confirm removes); a user edits their own details; a new API
token is made only when confirmed. Screenshots: tests/artifacts/night-*.png."""
from __future__ import annotations

import pytest

from tests.conftest import screenshot
from tests.test_browser_proposals import sign_in
from tests.test_nights import constructed_night, night_frame  # noqa: F401

pytestmark = pytest.mark.browser


def panel_text_has(page, text: str, present: bool = True, timeout: float = 10_000):
    page.wait_for_function("([t, present]) => { const b = document.querySelector('#night-body'); "
                           "return !!b && b.innerText.includes(t) === present; }", arg=[text, present],
                           timeout=timeout)


def test_the_night_panel_says_what_is_missing_and_follows_the_night(live_server, page, people, constructed_night):  # noqa: F811
    from db import db

    sign_in(page, live_server, "pi", "Spectral-Lines-42")
    page.locator("#night-configurations").wait_for()
    panel_text_has(page, "3 more flats needed for 930_M2")
    text = page.inner_text("#night-card")
    assert "2026-11-27" in text and "9 done" in text and "3 waiting" in text and "1 failed" in text
    assert "no standard star yet for 400_M2 / GG455 (flux calibration)" in text and "SECRET" not in text
    assert page.locator(".gsp-night-config[data-ready=false]").count() == 2
    screenshot(page, "night-panel")

    # three more flats and an arc of 930_M2 arrive: the panel follows without a reload
    for obstype in ("FLAT", "FLAT", "FLAT", "COMP"):
        night_frame(people["proposal"], obstype, "930_M2")
    db.session.commit()
    panel_text_has(page, "3 more flats needed", present=False)
    panel_text_has(page, "no arc yet for 930_M2", present=False)
    assert "no standard star yet for 930_M2 (flux calibration)" in page.inner_text("#night-card")
    screenshot(page, "night-panel-after")


def test_staff_give_a_placeholder_its_pi_and_collaborators_are_removed_only_when_confirmed(live_server, page,
                                                                                          people):
    from auth.accounts import add_collaborator, create_proposal
    from db import db
    from db.models import Proposal

    placeholder = create_proposal(soar_id="SOAR2026B-777", pi=None, title="(created from a FITS header)",
                                  placeholder=True)
    db.session.flush()
    add_collaborator(placeholder, people["users"]["collab"])
    db.session.commit()
    sign_in(page, live_server, "staff", "Spectral-Lines-42")
    page.goto(f"{live_server}/proposals/{placeholder.id}")
    page.locator("#proposal-edit-save").wait_for()
    assert page.inner_text("#proposal-header-pi") == "no PI"
    page.select_option("#proposal-edit-pi", label="Pi Tester (pi)")
    page.fill("#proposal-edit-semester", "2026b")
    page.fill("#proposal-edit-title", "Tidal disruption events")
    page.click("#proposal-edit-save")
    page.get_by_text("Saved: changed the PI, the semester and the title.").wait_for()
    assert page.inner_text("#proposal-header-pi") == "Pi Tester"
    assert "2026B" in page.inner_text("#proposal-overview")
    screenshot(page, "night-proposal-details")
    db.session.expire_all()
    saved = db.session.get(Proposal, placeholder.id)
    assert (saved.pi.username, saved.semester, saved.title, saved.placeholder) == (
        "pi", "2026B", "Tidal disruption events", False)

    page.get_by_role("tab", name="Collaborators").click()
    trash = page.locator("#collaborator-table button")
    asked = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    trash.click()
    page.wait_for_timeout(500)  # the dialog's answer reaches no callback: nothing to wait for
    question = "Remove Collab Tester <collab@example.org> from SOAR2026B-777? They lose access to its data at once."
    assert asked == [question]
    assert "collab@example.org" in page.inner_text("#collaborator-table")
    page.once("dialog", lambda dialog: dialog.accept())
    trash.click()
    page.get_by_text("Removed Collab Tester <collab@example.org>.").wait_for()
    assert "collab@example.org" not in page.inner_text("#collaborator-table")
    screenshot(page, "night-collaborator-removed")


def test_the_fits_header_label_goes_when_a_placeholder_gets_its_pi(live_server, page, people):
    from auth.accounts import create_proposal
    from db import db

    placeholder = create_proposal(soar_id="SOAR2026B-778", pi=None, title="(created from a FITS header)",
                                  placeholder=True)
    db.session.commit()
    sign_in(page, live_server, "staff", "Spectral-Lines-42")
    page.goto(f"{live_server}/proposals/{placeholder.id}")
    page.locator("#proposal-edit-save").wait_for()
    assert page.inner_text("#proposal-header-title") == "(created from a FITS header)"
    page.select_option("#proposal-edit-pi", label="Pi Tester (pi)")  # the PI only; the title field untouched
    page.fill("#proposal-edit-semester", "2026B")
    page.click("#proposal-edit-save")
    page.get_by_text("Saved: changed the PI, the semester and the title.").wait_for()
    assert page.inner_text("#proposal-header-title") == "Untitled"
    assert page.inner_text("#overview-title") == "Untitled"
    assert page.input_value("#proposal-edit-title") == ""
    screenshot(page, "night-placeholder-label-gone")
    page.goto(f"{live_server}/proposals")
    page.locator(f"#proposal-{placeholder.id}").wait_for()
    assert "FITS header" not in page.inner_text("#proposals-list")


def test_a_user_edits_their_own_details(live_server, page, people):
    from db import db

    sign_in(page, live_server, "collab", "Spectral-Lines-42")
    page.goto(f"{live_server}/account")
    page.locator("#account-save").wait_for()
    page.fill("#account-edit-email", "pi@example.org")
    page.click("#account-save")
    page.get_by_text("Not saved: Another account uses pi@example.org.").wait_for()
    page.fill("#account-edit-first-name", "Carla")
    page.fill("#account-edit-last-name", "Mendes")
    page.fill("#account-edit-email", "carla.mendes@example.org")
    page.select_option("#account-edit-partner", "Brazil")
    page.click("#account-save")
    page.locator("#account-details-saved").wait_for()
    screenshot(page, "night-account-details")
    db.session.expire_all()
    user = people["users"]["collab"]
    assert (user.full_name, user.email, user.partner) == ("Carla Mendes", "carla.mendes@example.org", "Brazil")


def test_a_new_api_token_is_made_only_when_confirmed(live_server, page, people):
    """The old token dies when a new one is made: the user panel asks first; Cancel keeps the old one."""
    from auth.tokens import hash_api_token
    from db import db

    collab, old = people["users"]["collab"], people["tokens"]["collab"]
    sign_in(page, live_server, "collab", "Spectral-Lines-42")
    page.goto(f"{live_server}/account")
    page.click("#account-token-button")
    page.locator("#account-token-modal").wait_for()
    assert "Your current token stops working at once" in page.inner_text("#account-token-modal")
    page.wait_for_timeout(300)  # the modal's fade, for the picture
    screenshot(page, "night-account-token-confirm")
    page.click("#account-token-cancel")
    page.locator("#account-token-modal").wait_for(state="hidden")
    assert page.inner_text("#account-token") == ""
    db.session.expire_all()
    assert collab.api_token_hash == hash_api_token(old)  # Cancel: the old token still works

    page.click("#account-token-button")
    page.click("#account-token-confirm")
    page.wait_for_function("() => document.querySelector('#account-token').textContent.length === 40")
    page.locator("#account-token-modal").wait_for(state="hidden")
    new = page.inner_text("#account-token")
    db.session.expire_all()
    assert collab.api_token_hash == hash_api_token(new) != hash_api_token(old)
