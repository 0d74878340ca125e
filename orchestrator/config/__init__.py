"""What the daemon is told: the typed documents (``configs``), how a directory of them is
loaded and checked (``loading``), the desired state as it runs and reloads
(``desired``), pipelines resolved (``pipelines``), BTP credentials
(``globalaccounts``) and the daemon's own settings (``settings``)."""
