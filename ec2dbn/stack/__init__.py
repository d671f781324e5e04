"""A stack's life on the user's side: ONE bring-up (key pair, group, instance or fleet instance, host key
pinned, state written), ONE make-ready, the state dir, user-data, leases, status, preflight checks and
teardown."""
