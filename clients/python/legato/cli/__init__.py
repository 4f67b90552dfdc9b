"""The ``legato`` command.

gRPC's C core would print its own log lines (a failed bind, a refused connection) next to
the command's messages, which already say what went wrong and what to do; it is kept quiet
unless GRPC_VERBOSITY is set. This runs before grpc is imported."""

import os

os.environ.setdefault("GRPC_VERBOSITY", "NONE")
