"""Alert delivery: reads the alerts outbox, routes, groups, silences and delivers
notifications exactly once per due notification."""
