"""The core: events, bus, Redis keys, configuration, plugin registry, daemon, HTTP server, CLI.

Nothing in this package imports `convmon.collectors`, `convmon.rules` or `convmon.alerts`;
the daemon and CLI find them through the plugin registry.
"""
