"""Generated canonical customer frames (numpy, vectorised): a million realistic customers in seconds."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zoho_store_sync.customers import conform

FIRST = np.array(
    [
        "James",
        "Mary",
        "John",
        "Patricia",
        "Robert",
        "Jennifer",
        "Michael",
        "Linda",
        "William",
        "Emily",
        "Oliver",
        "Olivia",
        "George",
        "Amelia",
        "Lukas",
        "Sophie",
        "Jean",
        "Camille",
        "Jörg",
        "Zoë",
        "María",
        "José",
        "Aiko",
        "Kenji",
        "Ana",
        "Luca",
        "Chloé",
        "Noah",
        "Mia",
        "Liam",
    ]
)
LAST = np.array(
    [
        "Smith",
        "Johnson",
        "Williams",
        "Brown",
        "Jones",
        "Garcia",
        "Miller",
        "Davis",
        "O'Brien",
        "Nguyen",
        "Kim",
        "Smith-Jones",
        "Taylor",
        "Davies",
        "Evans",
        "Müller",
        "Schmidt",
        "Dubois",
        "Lefèvre",
        "Rossi",
        "Bianchi",
        "García",
        "Fernández",
        "Tanaka",
        "Suzuki",
        "Kowalski",
        "Novák",
        "de la Cruz",
    ]
)
DOMAINS = np.array(
    ["example.com", "example.net", "example.org", "mail.example.com", "post.example.net", "inbox.example.org"]
)
COMPANIES = np.array(
    [
        "Acme Corp",
        "Globex LLC",
        "Initech Inc.",
        "Northwind Traders",
        "Contoso Ltd",
        "Umbrella GmbH",
        "Stark Industries",
        "Wayne Enterprises",
        "Hooli",
        "Vandelay Industries",
    ]
)
STREETS = np.array(
    [
        "Main St",
        "Oak Avenue",
        "Honey Bluff Parkway",
        "Maple Drive",
        "Sunset Blvd",
        "Elm Street",
        "High Street",
        "Hauptstraße",
        "Rue de Rivoli",
        "Via Roma",
    ]
)
# (city, state, zip, country)
PLACES = [
    ("New York", "New York", "10001", "US"),
    ("Los Angeles", "California", "90012", "US"),
    ("Chicago", "Illinois", "60601", "US"),
    ("Seattle", "Washington", "98101", "US"),
    ("London", None, "SW1A 1AA", "GB"),
    ("Manchester", None, "M1 1AE", "GB"),
    ("Berlin", "Berlin", "10115", "DE"),
    ("München", "Bayern", "80331", "DE"),
    ("Paris", None, "75001", "FR"),
    ("Lyon", None, "69001", "FR"),
    ("Roma", "Lazio", "00184", "IT"),
    ("Madrid", "Madrid", "28013", "ES"),
    ("Tokyo", "Tokyo", "100-0001", "JP"),
]
SALUTATIONS = np.array(["Mr.", "Mrs.", "Ms.", "Dr.", None], dtype=object)
STORES = np.array(["Default Store View", "EU Store View"])
# Skewed repeat purchases: about 45% never bought (Leads), the rest 1..12 orders (Contacts).
ORDER_COUNTS = np.arange(13)
ORDER_WEIGHTS = np.array([45, 22, 11, 7, 4, 3, 2, 2, 1.5, 1.2, 0.8, 0.5, 0.3]) / 100.3


def _pick(rng: np.random.Generator, values: np.ndarray, n: int) -> np.ndarray:
    return values[rng.integers(0, len(values), n)]


def _text(values: np.ndarray) -> pd.Series:
    return pd.Series(values, dtype="object")


def customers(n: int, seed: int = 7, invalid_share: float = 0.003, duplicate_share: float = 0.002) -> pd.DataFrame:
    """``n`` canonical customers (customers.CUSTOMER_COLUMNS), with a few invalid and duplicate emails."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1)
    key = pd.Series(ids).astype(str)
    first, last = _pick(rng, FIRST, n), _pick(rng, LAST, n)
    first_s, last_s = _text(first), _text(last)
    ascii = r"[^a-z]"  # Zoho takes ASCII local parts only: stores transliterate names in emails
    local = (
        first_s.str.lower().str.replace(ascii, "", regex=True)
        + "."
        + last_s.str.lower().str.replace(ascii, "", regex=True)
        + key
    )
    email = local + "@" + _text(_pick(rng, DOMAINS, n))
    # Stores hand over emails as typed: some upper case, some with stray spaces.
    shout = rng.random(n) < 0.05
    email[shout] = email[shout].str.title()
    spaced = rng.random(n) < 0.02
    email[spaced] = " " + email[spaced] + " "
    bad = np.flatnonzero(rng.random(n) < invalid_share)
    email.iloc[bad[0::3]] = None
    email.iloc[bad[1::3]] = email.iloc[bad[1::3]].str.replace("@", "@@", regex=False)
    email.iloc[bad[2::3]] = email.iloc[bad[2::3]].str.replace("@", " at ", regex=False)
    dup = np.flatnonzero(rng.random(n) < duplicate_share)
    email.iloc[dup] = email.iloc[rng.integers(0, n, len(dup))].to_numpy()

    place = rng.integers(0, len(PLACES), n)
    city, state, zip_code, country = (np.array([p[i] for p in PLACES], dtype=object)[place] for i in range(4))
    number = pd.Series(rng.integers(1, 9999, n)).astype(str)
    has_address = rng.random(n) < 0.9
    address = (number + " " + _text(_pick(rng, STREETS, n))).where(has_address)
    phone = (
        "+1 ("
        + pd.Series(rng.integers(200, 999, n)).astype(str)
        + ") 555-"
        + pd.Series(rng.integers(1000, 9999, n)).astype(str)
    ).where(rng.random(n) < 0.8)
    orders = rng.choice(ORDER_COUNTS, n, p=ORDER_WEIGHTS)
    value = np.where(orders > 0, np.round(orders * rng.gamma(2.0, 45.0, n), 2), 0.0)
    website = rng.integers(1, 3, n)
    updated = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 540 * 86400, n), unit="s")
    frame = pd.DataFrame(
        {
            "customer_key": key,
            "email": email,
            "company": _text(_pick(rng, COMPANIES, n)).where(rng.random(n) < 0.3),
            "full_name": first_s + " " + last_s,
            "firstname": first_s,
            "lastname": last_s.where(rng.random(n) > 0.01),  # a few without a last name: derived
            "salutation": _pick(rng, SALUTATIONS, n),
            "address": address,
            "city": _text(city).where(has_address),
            "state": _text(state).where(has_address),
            "zip": _text(zip_code).where(has_address),
            "country_name": _text(country).where(has_address),
            "phone_number": phone,
            "store": _text(STORES[website - 1]),
            "store_url": "https://shop.example.com",
            "store_id": pd.Series(website).astype(str),
            "store_is_mine": True,
            "order_count": orders,
            "balance": 0.0,
            "total_order_value": value,
            "newsletter": rng.random(n) < 0.25,
            "deleted": False,
            "registered": True,
            "source_updated_at": updated.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    return conform(frame)


def change(frame: pd.DataFrame, share: float, seed: int = 11) -> tuple[pd.DataFrame, np.ndarray]:
    """A copy with ``share`` of the rows edited (city, phone or a new order); returns it and the edited keys."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(frame), int(round(len(frame) * share)), replace=False))
    out = frame.copy()
    kind = rng.integers(0, 3, len(rows))
    city_col, phone_col = out.columns.get_loc("city"), out.columns.get_loc("phone_number")
    out.iloc[rows[kind == 0], city_col] = "Springfield"
    out.iloc[rows[kind == 1], phone_col] = "+1 (555) 010-0000"
    bought = rows[kind == 2]
    out.loc[out.index[bought], "order_count"] += 1
    out.loc[out.index[bought], "total_order_value"] = (out["total_order_value"].iloc[bought] + 25.0).round(2).to_numpy()
    out.loc[out.index[rows], "source_updated_at"] = "2025-07-01 12:00:00"
    return out, out["customer_key"].iloc[rows].to_numpy()
