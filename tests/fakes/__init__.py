"""Test doubles of the outside systems (an Argo Server, ...), usable from tests and standalone."""
