"""The path of an onboarding: its state machine and plan (pure), and the reconcile pass
of one cluster that observes its workflows, decides and acts, then records the outcome.

Read in this order: ``machine`` (the transition table), ``stepplans`` and ``steps`` (the
order of a pipeline's steps), ``planning`` (decide: pure), ``roster`` (load a
cluster's records), ``observing`` (observe), ``specs`` (the spec each onboarding runs
with), ``acting`` (act), ``reconciling`` (the pass, and the one place that records each
outcome), ``saving`` (its writes), ``watching`` (what wakes a pass). The core reaches
the outside only through ``orchestrator.ports``.
"""
