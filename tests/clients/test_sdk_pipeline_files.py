"""Pipelines in Python files (what `legato apply -f flows.py` reads): the file is imported
as the module an agent imports, in isolation; its function steps reference
``module:function`` by that name; its transform functions ship their source, runnable
where only pandas is; and every way a file can be wrong is said at its line."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import legato
from legato.codefiles import load_pipeline_file, specs_from_file
from legato.spec import SpecFormatError
from legato.steps import transform_code

FLOWS = """\
import legato
from pkg.helpers import THRESHOLD

etl = legato.Pipeline("etl", params={"rows": int})


@etl.step(args={"limit": THRESHOLD}, timeout="1m")
def extract(params, limit):
    return [{"n": n} for n in range(min(params["rows"], limit))]


@etl.transform(needs=[extract])
def double(data, extract, params):
    import math

    factor = 2 if params.get("rows") else math.nan
    return data.assign(n=extract["n"] * factor)


report = legato.Pipeline("report", steps=[legato.trigger("etl", pipeline=etl, wait=True)])
both = [etl, report]

if __name__ == "__main__":
    open(__file__ + ".ran", "w").close()
"""


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """``pkg/flows.py`` in a package, beside a helper module it imports."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helpers.py").write_text("THRESHOLD = 3\n")
    (pkg / "flows.py").write_text(FLOWS)
    return pkg / "flows.py"


def test_a_file_is_imported_as_its_module_and_in_isolation(package: Path) -> None:
    path_before = list(sys.path)
    etl, report = specs_from_file(package)
    assert [etl.name, report.name] == ["etl", "report"]  # once each, though listed twice
    extract = etl.steps[0]
    assert extract.function.function == "pkg.flows:extract"
    assert dict(extract.function.args) == {"limit": 3}
    assert report.steps[0].trigger.pipeline == "etl"
    assert sys.path == path_before
    assert not {"pkg", "pkg.flows", "pkg.helpers"} & set(sys.modules)
    assert not Path(f"{package}.ran").exists()  # the __main__ block did not run

    # Read anew on the next call: an edit shows.
    package.write_text(FLOWS.replace('timeout="1m"', 'timeout="2m"'))
    assert specs_from_file(package)[0].steps[0].timeout.seconds == 120


def test_the_agent_finds_what_the_file_references(package: Path) -> None:
    """The reference, imported and called as the agent does (by ``module:function``)."""
    spec = specs_from_file(package)[0]
    module_name, _, function_name = spec.steps[0].function.function.partition(":")
    probe = textwrap.dedent(
        f"""
        import importlib, inspect
        fn = getattr(importlib.import_module({module_name!r}), {function_name!r})
        print(list(inspect.signature(fn).parameters), fn({{"rows": 10}}, limit=2))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=package.parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == "['params', 'limit'] [{'n': 0}, {'n': 1}]\n"


def test_a_transform_function_runs_from_its_source_alone(package: Path) -> None:
    code = specs_from_file(package)[0].steps[1].transform.code
    assert code.startswith("from __future__ import annotations\n\ndef double(data, extract,")
    assert "@etl.transform" not in code
    assert code.endswith("\nresult = double(data=data, extract=inputs['extract'], params=params)\n")
    # What the agent's transform kind gives the code: no module globals beyond these.
    table = pd.DataFrame({"n": [1, 2]})
    scope: dict[str, Any] = {
        "data": table,
        "inputs": {"extract": table},
        "params": {"rows": 2},
        "pd": pd,
    }
    exec(compile(code, "<transform>", "exec"), scope)
    assert scope["result"]["n"].tolist() == [2, 4]


def test_function_references_name_the_module_a_script_or_package_is(tmp_path: Path) -> None:
    script = tmp_path / "nightly.py"
    script.write_text(
        textwrap.dedent(
            """\
            import legato

            pipeline = legato.Pipeline("nightly")

            @pipeline.step
            def extract():
                return None

            if __name__ == "__main__":
                print(pipeline.to_spec().steps[0].function.function)
            """
        )
    )
    as_script = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert as_script.stdout == "nightly:extract\n"
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "__init__.py").write_text("")
    script.rename(tmp_path / "jobs" / "nightly.py")
    for command in (["-m", "jobs.nightly"], [str(tmp_path / "jobs" / "nightly.py")]):
        done = subprocess.run(
            [sys.executable, *command],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert done.stdout == "jobs.nightly:extract\n", command


def test_functions_an_agent_cannot_import_are_refused_at_their_line() -> None:
    def make() -> legato.Pipeline:
        pipeline = legato.Pipeline("inner")

        @pipeline.step
        def nested() -> None:
            return None

        pipeline.function("lam", lambda: None)
        return pipeline

    pipeline = make()
    with pytest.raises(SpecFormatError) as caught:
        pipeline.to_spec()
    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(
        "steps[0].function.function: test_functions_an_agent_cannot_import_are_refused_at_"
        "their_line.make.nested is defined inside a function, where an agent cannot import "
        "it; define it at the top level of a module"
    )
    assert lines[1].endswith(
        "steps[1].function.function: a lambda has no name an agent can import; use a def at "
        "module level"
    )
    assert lines[0].startswith(f"{__file__}:")


def global_name(data: Any) -> Any:
    return math.floor(data)


def default_of_module(data: Any, n: float = math.pi) -> Any:
    return data


def star(*frames: Any) -> Any:
    return frames


async def coroutine(data: Any) -> Any:
    return data


def test_transform_functions_that_need_their_module_are_refused() -> None:
    limit = 3

    def closure(data: Any) -> Any:
        return data.head(limit)

    assert transform_code(closure, []) == (
        "",
        "closure uses limit of the function it is defined in; only its own code goes to the "
        "agent, so pass values through params",
    )
    assert transform_code(global_name, [])[1] == (
        "global_name uses 'math' from its module, but only the function's own code goes to "
        "the agent: import inside the function, or make it a function step (@legato.step) "
        "so the agent imports its module"
    )
    assert (
        "default_of_module uses 'math' from its module" in transform_code(default_of_module, [])[1]
    )
    assert transform_code(star, []) == ("", "star takes *frames; name each parameter")
    assert transform_code(coroutine, [])[1] == (
        "coroutine is async; a transform's code runs synchronously"
    )


def test_every_way_a_file_is_wrong_is_said_at_its_line(tmp_path: Path) -> None:
    def problems(name: str, text: str | None) -> list[str]:
        path = tmp_path / name
        if text is not None:
            path.write_text(textwrap.dedent(text))
        with pytest.raises(SpecFormatError) as caught:
            load_pipeline_file(path)
        return str(caught.value).splitlines()

    assert problems("missing.py", None) == [f"{tmp_path}/missing.py: no such file; check the path"]
    assert problems("flows.yaml", "name: x\n") == [
        f"{tmp_path}/flows.yaml: is not a Python file (.py); YAML is read as a spec"
    ]
    assert problems("syntax.py", "import legato\n\nx = legato.Pipeline(\n") == [
        f"{tmp_path}/syntax.py:3: invalid Python: '(' was never closed"
    ]
    assert problems(
        "raises.py",
        """\
        import legato

        def rows():
            return {}["rows"]

        pipeline = legato.Pipeline("p", params={"rows": rows()})
        """,
    ) == [f"{tmp_path}/raises.py:4: importing it raised KeyError: 'rows'"]
    assert problems("missing_import.py", "import legato\nimport no_such_module_here\n") == [
        f"{tmp_path}/missing_import.py:2: importing it raised ModuleNotFoundError: No module "
        "named 'no_such_module_here'"
    ]
    assert problems("empty.py", "import legato\n") == [
        f"{tmp_path}/empty.py: defines no pipeline; make one with legato.Pipeline(name=...) "
        "and bind it to a name at the top level of the file"
    ]
    twice = problems(
        "twice.py",
        """\
        import legato

        first = legato.Pipeline("etl")
        second = legato.Pipeline("etl")
        """,
    )
    assert twice == [
        f"{tmp_path}/twice.py:4: name: two pipelines are named 'etl' (the other at "
        f"{tmp_path}/twice.py:3); give each its own name"
    ]
    assert problems("legato.py", "x = 1\n") == [
        f"{tmp_path}/legato.py: its module name 'legato' is taken by the module already "
        f"loaded from {legato.__file__}; rename the file (or its package folder)"
    ]
    assert problems("my-flows.py", "x = 1\n") == [
        f"{tmp_path}/my-flows.py: cannot be imported as 'my-flows': rename the file (and its "
        "package folders) to names made of letters, digits and _"
    ]
