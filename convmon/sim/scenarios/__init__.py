"""Simulated scenarios for ``convmon demo``: each starts its local servers and feeds them
on the demo's accelerated clock (entry-point group ``convmon.demos``)."""
