"""The WorkflowTemplates, one per step, shipped as the package ``orchestrator.workflowtemplates``.

This directory is package data (see ``pyproject.toml``): ``orchestrator run`` installs
these files on each cluster unless ``--templates`` names another directory. Their step
containers name the image ``STEP_IMAGE``, which the daemon replaces with the step image
(``--step-image``, or the Cluster's ``spec.steps``) as it installs them.
"""
