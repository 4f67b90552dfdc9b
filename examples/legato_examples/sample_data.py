"""A sample warehouse for the example pipelines, with generated data: users, orders, sales
and the report tables, on PostgreSQL (or SQLite, except for the daily report's SQL).

    python -m legato_examples.sample_data postgresql://postgres@127.0.0.1:5432/warehouse

The data is random but reproducible (``seed``), with deliberate flaws for the data-quality
checks to find: some users without an email and some orders with a negative amount."""

from __future__ import annotations

import argparse
import datetime as dt
import random
from dataclasses import dataclass

import sqlalchemy as sa

REGIONS = ("north", "south", "east", "west", "central")

SCHEMA = (
    """CREATE TABLE users (
        user_id INTEGER PRIMARY KEY,
        email TEXT,
        created_at TIMESTAMP WITH TIME ZONE NOT NULL)""",
    """CREATE TABLE orders (
        order_id TEXT PRIMARY KEY,
        customer_id INTEGER NOT NULL,
        amount NUMERIC(12, 2),
        updated_at TIMESTAMP WITH TIME ZONE NOT NULL)""",
    """CREATE TABLE sales (
        sale_id INTEGER PRIMARY KEY,
        region TEXT NOT NULL,
        amount NUMERIC(12, 2) NOT NULL,
        ordered_at TIMESTAMP WITH TIME ZONE NOT NULL)""",
    """CREATE TABLE order_totals (
        day DATE PRIMARY KEY,
        orders INTEGER NOT NULL,
        amount NUMERIC(14, 2) NOT NULL)""",
)


@dataclass(frozen=True)
class Counts:
    users: int = 500
    null_emails: int = 7
    orders: int = 1000
    negative_orders: int = 4
    sales: int = 2000
    days: int = 14


def create_warehouse(url: str, counts: Counts = Counts(), seed: int = 7) -> Counts:
    """Create the tables at ``url`` and fill them; returns the counts it used."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    engine = sa.create_engine(_sync(url))
    with engine.begin() as conn:
        for statement in SCHEMA:
            conn.execute(sa.text(statement))
        conn.execute(
            sa.text("INSERT INTO users VALUES (:user_id, :email, :created_at)"),
            [
                {
                    "user_id": i,
                    "email": None if i < counts.null_emails else f"user{i}@example.com",
                    "created_at": now - dt.timedelta(days=rng.uniform(0, 60)),
                }
                for i in range(counts.users)
            ],
        )
        conn.execute(
            sa.text("INSERT INTO orders VALUES (:order_id, :customer_id, :amount, :updated_at)"),
            [
                {
                    "order_id": f"o-{i:05d}",
                    "customer_id": rng.randrange(counts.users),
                    "amount": round(
                        -rng.uniform(1, 50) if i < counts.negative_orders else rng.uniform(5, 500),
                        2,
                    ),
                    "updated_at": now - dt.timedelta(days=rng.uniform(2, 30)),
                }
                for i in range(counts.orders)
            ],
        )
        conn.execute(
            sa.text("INSERT INTO sales VALUES (:sale_id, :region, :amount, :ordered_at)"),
            [
                {
                    "sale_id": i,
                    "region": rng.choice(REGIONS),
                    "amount": round(rng.uniform(10, 900), 2),
                    "ordered_at": now - dt.timedelta(days=rng.uniform(0, counts.days)),
                }
                for i in range(counts.sales)
            ],
        )
    engine.dispose()
    return counts


def _sync(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="SQLAlchemy URL of an empty database")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    counts = create_warehouse(args.url, seed=args.seed)
    print(
        f"created users ({counts.users}), orders ({counts.orders}), sales ({counts.sales}) "
        "and order_totals"
    )


if __name__ == "__main__":
    main()
