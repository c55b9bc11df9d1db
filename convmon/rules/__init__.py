"""Rule engine: applies events to windows kept in Redis and turns rule conditions into
alert transitions written to the alerts outbox."""
