"""What the control plane and the agent report about themselves: structured logs
(``logsetup``) and OpenTelemetry traces (``tracing``). Server-side only: it needs structlog
and opentelemetry-sdk, which the client package (``pip install legato``) does without."""
