"""The funnel dashboard in Debian's Chromium, headless: log in through the form, read the chart off a screenshot.

The bars are measured in the screenshot's pixels and must be as long, relative to each other, as
the numbers the API gives for the same broker and range.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image

from leadflow.config import Settings
from leadflow.demo.run import BackgroundServer
from reports_api.app import create_app
from reports_api.dashboard import BAR_MAX_WIDTH
from reports_api.security import issue_token
from tests.browser import require_chromium
from tests.reports_world import PASSWORD, World, build_world

CHROMIUM = require_chromium()
BAR_RGB = (0x25, 0x63, 0xEB)  # the funnel bars' fill in dashboard.html
RANGE = {"start": "2026-01-01", "end": "2027-12-31"}


@pytest.fixture(scope="module")
def world(settings: Settings) -> World:
    return build_world(settings)


@pytest.fixture(scope="module")
def base_url(settings: Settings, world: World) -> Iterator[str]:
    with BackgroundServer(create_app(settings.database_url, world.tokens)) as server:
        yield server.url


def bar_lengths(png: bytes) -> list[int]:
    """Length in pixels of each horizontal run of the bar colour, top to bottom, one per bar."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    width, height = image.size
    pixels = image.load()
    assert pixels is not None
    bars: list[int] = []
    previous = 0
    for y in range(height):
        run = sum(1 for x in range(width) if _close(pixels[x, y], BAR_RGB))
        if run and not previous:
            bars.append(run)
        elif run and previous:
            bars[-1] = max(bars[-1], run)
        previous = run
    return bars


def _close(pixel: object, rgb: tuple[int, int, int]) -> bool:
    assert isinstance(pixel, tuple)
    return all(abs(int(a) - b) <= 6 for a, b in zip(pixel, rgb, strict=False))


def test_the_dashboard_draws_the_funnel_the_api_reports(base_url: str, world: World) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, chromium_sandbox=False,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(f"{base_url}/dashboard")
            assert page.url.endswith("/dashboard/login")  # no session: the login form
            page.fill("input[name=email]", world.users["admin_a"].email)
            page.fill("input[name=password]", "wrong-password-here")
            page.click("button[type=submit]")
            assert "incorrectos" in page.inner_text("[role=alert]")
            page.fill("input[name=email]", world.users["admin_a"].email)
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"**/dashboard/brokers/{world.a.broker_id}")
            page.goto(f"{base_url}/dashboard/brokers/{world.a.broker_id}?start={RANGE['start']}&end={RANGE['end']}")
            chart = page.locator("#funnel-chart")
            shot = chart.screenshot()
            labels = chart.locator(".funnel-count").all_text_contents()
            forbidden = page.goto(f"{base_url}/dashboard/brokers/{world.b.broker_id}")
            assert forbidden is not None and forbidden.status == 403
            assert world.b.name not in page.content()
        finally:
            browser.close()

    import httpx

    api = httpx.get(f"{base_url}/brokers/{world.a.broker_id}/funnel", params=RANGE,
                    headers={"Authorization": f"Bearer {issue_token(world.tokens, world.users['admin_a'])}"}).json()
    shown = [s for s in api["stages"] if s["stage"] != "perdido"]
    counts = [s["leads_entered"] for s in shown]
    assert [label.split(" · ")[0] for label in labels] == [str(c) for c in counts]

    lengths = bar_lengths(shot)
    assert len(lengths) == len(counts), (lengths, counts)
    widest = max(counts)
    for pixels, count in zip(lengths, counts, strict=True):
        assert abs(pixels - BAR_MAX_WIDTH * count / widest) <= 2, (lengths, counts)
