"""Log in through the real login page in Debian's chromium and land on the Data page."""
import pytest

from tests.conftest import PASSWORD, screenshot

pytestmark = pytest.mark.browser


def test_login_through_the_page_shows_data_and_navigation(live_server, page, people):
    page.goto(f"{live_server}/search")
    assert page.url == f"{live_server}/login?next=/search"
    page.fill("#username", "staff")
    page.fill("#password", "wrong-password")
    page.click("#login-submit")
    assert "Please enter a correct username and password." in page.inner_text("#login-error")
    page.fill("#username", "staff")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(f"{live_server}/search")
    page.goto(f"{live_server}/")
    navbar = page.locator("#navbar")
    navbar.wait_for()
    for label in ("Data", "Search", "Proposals", "Logs", "Management", "API Docs", "Staff Tester", "Sign Out"):
        assert navbar.get_by_text(label, exact=True).first.is_visible(), label
    page.wait_for_selector("#observed-index")
    screenshot(page, "login-data-page")
    page.click("#nav-logout")
    page.wait_for_url(f"{live_server}/login")


def test_management_menu_hidden_from_non_staff(live_server, page, people):
    page.goto(f"{live_server}/login")
    page.fill("#username", "collab")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.locator("#navbar").wait_for()
    assert page.locator("#navbar").get_by_text("Proposals", exact=True).is_visible()
    assert page.locator("#nav-management").count() == 0
