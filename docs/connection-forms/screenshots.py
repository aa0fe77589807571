"""Screenshots of the three connection forms, taken with headless Chromium against a real Airflow api-server.

Not part of the test suite. How the committed PNGs were made (Debian: ``apt-get install chromium
chromium-driver``; selenium in a scratch venv, it is not in the lock):

    python3.11 -m venv /tmp/shotenv && /tmp/shotenv/bin/pip install selenium
    # an api-server of this repo's lock with the distribution installed, every visitor an admin:
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True airflow db migrate
    AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=True airflow api-server -p 8799 -H 127.0.0.1
    /tmp/shotenv/bin/python docs/connection-forms/screenshots.py http://127.0.0.1:8799

Each image is *Admin > Connections > Add Connection* with the type chosen, one panel per fold of the form
(Airflow 3.3 opens one fold at a time), stacked.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

OUT = Path(__file__).resolve().parent
FORMS = {  # file → (type as listed, folds to show)
    "zoho_crm.png": ("Zoho CRM", ("Standard Fields", "Extra Fields", "Advanced: local sandbox only")),
    "magento.png": ("Magento 2", ("Standard Fields", "Extra Fields", "OAuth 1.0a (auth oauth1)")),
    "deconetwork.png": ("DecoNetwork", ("Standard Fields", "Extra Fields")),
}


def _browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1400"):
        options.add_argument(argument)
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options)


def _button(scope, text: str):  # noqa: ANN001, ANN201 - a selenium element
    return next(b for b in scope.find_elements(By.TAG_NAME, "button") if b.text.strip() == text)


def shoot(base_url: str) -> None:
    browser = _browser()
    try:
        browser.get(f"{base_url}/auth/token/login?next={base_url}/connections")  # all-admins login
        time.sleep(5)
        for file_name, (type_name, folds) in FORMS.items():
            browser.get(f"{base_url}/connections")
            time.sleep(3)
            _button(browser, "Add Connection").click()
            time.sleep(2)
            dialog = browser.find_element(By.CSS_SELECTOR, "[role=dialog]")
            dialog.find_element(By.NAME, "connection_id").send_keys(file_name.removesuffix(".png") + "_example")
            kind = dialog.find_element(By.CSS_SELECTOR, "input[role=combobox]")
            kind.click()
            kind.send_keys(type_name)
            time.sleep(1)
            kind.send_keys(Keys.ENTER)
            time.sleep(2)
            panels = []
            for index, fold in enumerate(folds):
                if index:  # the standard fields are open when the type is chosen
                    _button(dialog, fold).click()
                    time.sleep(1)
                panels.append(Image.open(io.BytesIO(dialog.screenshot_as_png)))
            width = max(panel.width for panel in panels)
            stacked = Image.new("RGB", (width, sum(panel.height for panel in panels)), "white")
            top = 0
            for panel in panels:
                stacked.paste(panel, (0, top))
                top += panel.height
            stacked.save(OUT / file_name, optimize=True)
            print("wrote", OUT / file_name)
    finally:
        browser.quit()


if __name__ == "__main__":
    shoot(sys.argv[1].rstrip("/") if len(sys.argv) > 1 else "http://127.0.0.1:8799")
