"""Run a pipeline's steps from a notebook (Jupyter) or a script, on small data::

    import legato.notebook

    p = legato.notebook.load("etl.yaml")        # a file, a .py module, or a pipeline name
    out = p.step("transform").run(data=df, params={"days": 7})
    out.data, out.values, out.logs               # a DataFrame, a dict, the lines
    p.step("extract").run(on="near-warehouse")   # on a connected agent, as a test run
    p.test(inputs={"extract": df})               # the whole DAG here

Steps run as on an agent: the same step kinds, a child process per attempt, the step's
timeout and memory limits; log lines are shown as they come. Needs the ``notebook``
extra (``pip install 'legato[notebook]'``). See docs/notebook.md; for an in-process
control plane and agent in tests, see :mod:`legato.testing`."""

from legato.notebook.errors import NotebookError, StepFailed
from legato.notebook.pipelines import Pipeline, Step, load
from legato.notebook.results import StepResult, TestResult

__all__ = ["NotebookError", "Pipeline", "Step", "StepFailed", "StepResult", "TestResult", "load"]
