"""Generated legato.v1 stubs (scripts/gen-protos). Do not edit."""
