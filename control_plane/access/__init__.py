"""Who may do what: roles, credentials (API tokens, agent enrolment tokens, client
certificates), the authenticated caller, and the rule each RPC declares.

Domain code: nothing here knows gRPC servicers; ``control_plane.api.access`` is the
interceptor that applies it to every call."""
