"""The pipeline spec format: YAML or JSON that maps field for field onto
:class:`legato.v1.spec_pb2.PipelineSpec`, read with the line of every field and written
back in the same form.

>>> loaded = load_spec_file("pipeline.yaml")  # raises SpecFormatError listing every problem
>>> loaded.source_map.line_for("steps[1].retry.delay")
>>> print(dump_spec_yaml(loaded.spec))
"""

from legato.spec.loader import LoadedSpec, load_spec_file, load_spec_text
from legato.spec.paths import PathPart, SourceMap, format_path, parse_path
from legato.spec.problems import SpecFormatError, SpecProblem
from legato.spec.render import dump_spec_yaml, spec_to_dict

__all__ = [
    "LoadedSpec",
    "PathPart",
    "SourceMap",
    "SpecFormatError",
    "SpecProblem",
    "dump_spec_yaml",
    "format_path",
    "load_spec_file",
    "load_spec_text",
    "parse_path",
    "spec_to_dict",
]
