"""Through the account page in Debian's chromium: the PI subscribes to a proposal's events (the secret shown once),
pauses the subscription and changes its events in place, and deletes it."""
import pytest

from tests.conftest import ARTIFACTS, PASSWORD
from tests.test_browser_proposals import sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def app_config():
    return {"WEBHOOK_ALLOW_PRIVATE": True}  # the receiver of a test is on loopback


def test_pi_subscribes_pauses_edits_and_deletes_on_the_account_page(live_server, page, people, dash_app):
    from db import db
    from db.models import Subscription

    sign_in(page, live_server, "pi", PASSWORD)
    page.goto(f"{live_server}/account")
    page.locator("#account-no-subscriptions").wait_for()
    page.fill("#subscribe-url", "http://127.0.0.1:9/gsp-hook")
    page.locator("#subscribe-events").get_by_text("Frame failed").click()
    page.locator("#subscribe-email").get_by_text("E-mail").click()
    page.click("#subscribe-button")
    secret = page.locator("#account-subscription-secret")
    secret.wait_for()
    subscription = Subscription.query.one()
    assert secret.inner_text() == subscription.secret
    assert (subscription.proposal.soar_id, subscription.events, subscription.email) == (
        "SOAR2026B-001", ["spectrum.ready", "frame.failed"], True)
    row = page.locator(f"#subscription-{subscription.id}")
    assert "SOAR2026B-001" in row.inner_text() and "http://127.0.0.1:9/gsp-hook" in row.inner_text()

    row.get_by_text("Active").click()
    row.get_by_text("Night ready").click()
    page.wait_for_function(f"() => document.querySelector('#subscription-{subscription.id}').innerText"
                           ".includes('Saved.')")
    for _ in range(50):
        db.session.expire_all()
        if Subscription.query.one().events == ["spectrum.ready", "frame.failed", "night.ready"]:
            break
        page.wait_for_timeout(100)
    assert (Subscription.query.one().paused, Subscription.query.one().events) == (
        True, ["spectrum.ready", "frame.failed", "night.ready"])
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator("#account-notifications").screenshot(path=str(ARTIFACTS / "account-notifications.png"))

    page.click(f"#subscription-{subscription.id} button")
    page.locator("#account-no-subscriptions").wait_for()
    db.session.expire_all()
    assert Subscription.query.count() == 0
