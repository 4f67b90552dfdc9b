"""gRPC plumbing: one servicer module per proto service, proto ↔ domain conversion, and the
interceptor that maps domain errors to gRPC statuses."""
