"""The benchmark of issue 10: the daemon against a naive poller on a fast fake Argo Server.

``python -m bench`` (``make bench``) runs, one after the other on fresh fakes:
the daemon as a real process, a restart of it on the stored onboardings (for
``/readyz``), and the naive poller; then prints one table. It asserts nothing.
See ``docs/performance.md``.
"""
