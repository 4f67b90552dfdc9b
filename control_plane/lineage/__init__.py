"""Lineage: which datasets each step read and wrote, the edges between datasets and
pipelines that runs recorded, the walk of that graph, and OpenLineage events (see
docs/lineage.md). Plain Python over plain data; the store statements are in
``store/lineage.py``, the servicer in ``api/lineage_service.py``."""
