"""Code the example pipelines call (``function`` steps), and the sample warehouse they run
against. Put ``examples/`` on the agent's ``PYTHONPATH`` to run them."""
