"""Pipelines as code: a pipeline written in Python instead of YAML.

``orders`` makes a table of orders (some with bad amounts), keeps the valid ones, totals
them per region and reports the totals; ``weekly`` starts it every Monday and waits for
it. No database is needed. Apply both and run one::

    legato apply -f examples/legato_examples/orders_as_code.py
    PYTHONPATH=examples legato agent ...        # the agent imports this module
    legato run orders-as-code -p rows=500 --follow

or from Python (docs/sdk.md)::

    from legato import Client
    from legato_examples.orders_as_code import orders

    with Client() as client:
        orders.apply(client)
        run = client.run("orders-as-code", params={"rows": 500})
        print(run.wait(timeout=120).status)
        print(run.output("totals").to_pandas())

``extract`` is a function step: the agent imports ``legato_examples.orders_as_code`` and
calls it, so ``examples/`` must be on the agent's ``PYTHONPATH``. ``clean`` and ``totals``
are transform steps: their source is the step's code, so they import what they need
inside."""

from __future__ import annotations

import random
from typing import Any

import legato

REGIONS = ("eu", "us", "apac")

orders = legato.Pipeline(
    name="orders-as-code",
    description="Generate orders, keep the valid ones, total them per region (in Python).",
    labels={"team": "analytics"},
    params={
        "rows": legato.Param(int, default=100, description="How many orders to generate."),
        "seed": legato.Param(int, default=7, description="Seed of the generator."),
    },
    limits=legato.Limits(max_duration="10m", max_concurrent_runs=2),
    retry=legato.Retry(2, delay="5s", retry_on=["lost"]),
)


@orders.step(timeout="1m")
def extract(params: dict[str, Any]) -> Any:
    """Stand-in for a partner API: ``rows`` orders, a few of them with bad amounts."""
    import pandas as pd  # the agent has pandas; a client that only applies needs none

    rng = random.Random(params["seed"])
    numbers = range(1, params["rows"] + 1)
    orders = pd.DataFrame(
        {
            "order_id": list(numbers),
            "region": [rng.choice(REGIONS) for _ in numbers],
            "amount": [round(rng.uniform(-60, 200), 2) for _ in numbers],
        }
    )
    print(f"generated {len(orders)} orders")
    return orders


@orders.transform(needs=[extract])
def clean(data: Any) -> Any:
    """Keep the orders with a positive amount."""
    kept = data[data["amount"] > 0]
    print(f"kept {len(kept)} of {len(data)} orders")
    return kept


@orders.transform(
    needs=[clean],
    expect=legato.StepExpectations(records=legato.RecordsExpectation(min=1, action="fail")),
)
def totals(data: Any) -> Any:
    """The total amount and the number of orders per region."""
    grouped = data.groupby("region", as_index=False).agg(
        amount=("amount", "sum"), orders=("order_id", "count")
    )
    return grouped.round(2).sort_values("region")


orders.transform(
    "report",
    needs=[totals],
    when="steps.totals.records > 0",
    code=(
        "print(data.to_string(index=False))\n"
        'result = {"regions": len(data), "amount": float(data["amount"].sum())}\n'
    ),
)

weekly = legato.Pipeline(
    name="orders-weekly",
    description="Every Monday at 06:30 Paris time, 1,000 orders through orders-as-code.",
    schedule=legato.Schedule("30 6 * * MON", timezone="Europe/Paris", overlap="skip"),
    steps=[legato.trigger("orders", pipeline=orders, params={"rows": "1000"}, wait=True)],
)
