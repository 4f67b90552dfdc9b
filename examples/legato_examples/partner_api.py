"""The ETL example's source: a partner's HTTP API of orders, read page by page.

``GET {api_url}/orders?since=<ISO date>&page=<n>`` answers ``{"orders": [...], "next_page":
n | null}``; each order is ``{"orderId", "customerId", "total", "updatedAt"}``."""

from __future__ import annotations

import datetime as dt
import json
import urllib.parse
import urllib.request
from typing import Any

MAX_PAGES = 1000


def fetch_orders(params: dict[str, Any], timeout: float = 30.0) -> list[dict[str, Any]]:
    """The orders changed in the last ``params['since_days']`` days, from ``params['api_url']``."""
    base = str(params["api_url"]).rstrip("/")
    since = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=int(params["since_days"]))
    orders: list[dict[str, Any]] = []
    page: int | None = 1
    for _ in range(MAX_PAGES):
        if page is None:
            break
        query = urllib.parse.urlencode({"since": since.isoformat(), "page": page})
        with urllib.request.urlopen(f"{base}/orders?{query}", timeout=timeout) as response:
            body = json.load(response)
        orders.extend(body["orders"])
        page = body.get("next_page")
    print(f"fetched {len(orders)} orders changed since {since} from {base}")
    return orders
