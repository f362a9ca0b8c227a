"""End to end: ``airflow api-server`` on a loopback port, a real managed table, headless Chromium.

Logs in through SimpleAuthManager's login page (a configured user with a password from the
passwords file, not the all-admins mode), opens the "Lakehouse" navigation entry, finds the table
row with its health and status, opens the table page and saves a screenshot (to
``docs/img/lakehouse.png`` when ``AMORO_UPDATE_SCREENSHOT=1``).

Needs the Debian packages ``chromium`` and ``chromium-driver`` (``make browser`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import run_dag, task_states

from .conftest import create_demo_table, running_api_server
from .test_api import _sync

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "img" / "lakehouse.png"
USER, PASSWORD = "lakeadmin", "lake-house-pass-7"
IDENT = "shop.orders"  # runtime state is session-wide (Airflow DB): no other test uses this table
CHROME_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1440,1100",
)


@pytest.fixture
def api_server(airflow_db: Path, ui_env: Path, amoro_conn: Any, tmp_path: Path) -> Iterator[str]:
    """``airflow api-server`` on 127.0.0.1 with a SimpleAuthManager user and password; yields its URL."""
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("chromium and chromium-driver are required: run `make browser`")
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    env = {
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
    }
    with running_api_server(tmp_path / "api-server.log", env) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium driven by selenium, with the system chromedriver (nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()


def _managed_table(catalog: Any, cache_dir: Path) -> dict[str, Any]:
    """A table optimized once by a real DAG run, then written to again; synced into the cache."""
    import pendulum
    import pyarrow as pa
    from airflow.sdk import DAG

    table = create_demo_table(catalog, IDENT)
    ops = pytest.importorskip("airflow_provider_amoro.operators.optimizing")
    with DAG("e2e_optimize_orders", schedule=None, start_date=pendulum.datetime(2024, 1, 1)) as dag:
        ops.SelfOptimizingOperator(task_id="optimize", table=IDENT, amoro_conn_id="amoro_default")
    assert task_states(run_dag(dag))[("optimize", -1)] == "success"
    table = catalog.load_table(IDENT)
    schema = table.schema().as_arrow()
    for b in range(6, 10):  # new small files: the table needs optimizing again
        ids = list(range(b * 100, b * 100 + 100))
        table.append(
            pa.table(
                {"id": ids, "region": ["eu" if i % 2 else "us" for i in ids], "amount": ids}, schema=schema
            )
        )
    _sync(cache_dir, "amoro_default")
    return json.loads((cache_dir / "catalog__amoro_default.json").read_text())["tables"][IDENT]


def test_lakehouse_page_in_headless_chromium(
    api_server: str, browser: Any, ui_env: Path, amoro_conn: Any
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    cached = _managed_table(amoro_conn, ui_env)
    wait = WebDriverWait(browser, 60)

    # Not logged in: Airflow sends the browser to its login page.
    browser.get(f"{api_server}/plugin/lakehouse")
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(USER)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()

    # The "Lakehouse" navigation entry shows our page in Airflow's UI.
    nav = wait.until(
        ec.presence_of_element_located((By.XPATH, "//a[.//*[text()='Lakehouse'] or text()='Lakehouse']"))
    )
    assert nav.is_displayed()
    frame = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "iframe")))
    assert frame.get_attribute("src").endswith("/amoro/")
    browser.switch_to.frame(frame)
    row = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-identifier="{IDENT}"]')))
    status = row.find_element(By.CSS_SELECTOR, ".status").text
    health = row.find_element(By.CSS_SELECTOR, ".health").text
    assert status == "PENDING"
    assert int(health) == cached["health"] and 0 <= int(health) < 100
    assert (
        row.find_element(By.CSS_SELECTOR, "a.dag-link")
        .get_attribute("href")
        .endswith("/dags/amoro__amoro_default__shop__orders")
    )
    # Client-side filter hides rows that do not match.
    box = browser.find_element(By.ID, "filter-q")
    box.send_keys("no-such-table")
    assert not row.is_displayed()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    assert row.is_displayed()

    # The table page: tabs, the chart, and the optimizing process of the real run.
    row.find_element(By.CSS_SELECTOR, "a.table-link").click()
    wait.until(ec.presence_of_element_located((By.ID, "table-status")))
    assert browser.find_element(By.ID, "table-name").text == "orders"
    assert browser.find_element(By.ID, "table-status").text == "PENDING"
    assert browser.find_element(By.ID, "history-chart").is_displayed()
    browser.find_element(By.CSS_SELECTOR, 'nav.tabs a[data-tab="optimizing"]').click()
    processes = browser.find_element(By.ID, "processes")
    assert processes.is_displayed() and "SUCCESS" in processes.text
    browser.find_element(By.CSS_SELECTOR, 'nav.tabs a[data-tab="details"]').click()
    assert browser.find_element(By.ID, "properties").is_displayed()

    browser.switch_to.default_content()
    # The README's screenshot is refreshed only on request, so test runs leave the work tree clean.
    shot = SCREENSHOT if os.environ.get("AMORO_UPDATE_SCREENSHOT") else ui_env.parent / "lakehouse.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 20_000

    # Links into Airflow land on the page they name: Airflow's plugin iframe is sandboxed without
    # top navigation, so a plain target=_top link would do nothing. Click one and follow it.
    browser.switch_to.frame(browser.find_element(By.CSS_SELECTOR, "iframe"))
    browser.find_element(By.CSS_SELECTOR, 'nav.tabs a[data-tab="optimizing"]').click()
    link = browser.find_element(By.CSS_SELECTOR, "#processes a.run-link")
    href = link.get_attribute("href")
    assert "/dags/e2e_optimize_orders/runs/" in href
    link.click()
    browser.switch_to.default_content()
    wait.until(lambda b: b.current_url == href)
    wait.until(ec.presence_of_element_located((By.XPATH, "//*[contains(text(), 'e2e_optimize_orders')]")))
