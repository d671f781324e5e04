"""Verbs that manage a stack's cloud resources: launch, status, teardown."""
