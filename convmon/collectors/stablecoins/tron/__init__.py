"""Tron stablecoins (USDT TRC-20 and any configured TRC-20 token) through a
TronGrid-compatible events API: `client` pages the API, `decode` turns events into mints and
burns, `collector` follows each (token, event) stream from its checkpoint, `plugin` wires it
into the daemon."""
