"""Verbs that run jobs: train (remote or --local), logs, ssh."""
