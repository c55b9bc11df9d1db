"""Collectors: one subpackage per source family. Each follows an external source and
publishes events onto the bus; nothing here reads another package's state."""
