"""Bitcoin blocks attributed to mining pools. See `collector` for the flow.

- `sources`: where blocks come from (Esplora/mempool REST+websocket, Bitcoin Core RPC+ZMQ);
  `blocks`: their JSON parsed into `ChainBlock` and turned into events.
- `attribution`, `registry`, `reattribution`: pool matching, where the pool list comes
  from (and whether a fallback stands in for it), and switching lists while running.
- `entities`: dated pool -> parent-company links (convmon's curated `entities.json`, each
  with its source), resolved at each block's timestamp.
- `collector` (sync and the watch loop), `publish`, `checkpoint`, `reorg`, `journal`,
  `backfill`, `record` (the recent-block record in Redis).
- `window`, `cli`, `plugin`: offline replay, the ``convmon pools``/``backfill`` commands,
  the plugin entry. `errors`: the package's error family.

The local Esplora/Bitcoin Core server and the demo scenario live in `convmon.sim`.
"""
