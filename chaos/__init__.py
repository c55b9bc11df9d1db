"""The chaos suite: the real daemon, as its own process, against convmon's local servers and
a Redis the suite owns, under daemon and Redis kills, websocket drops, garbage and 10 MB
payloads and a receiver outage; it counts what was lost or duplicated. See README.md.
"""
