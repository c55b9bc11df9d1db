"""Bitcoin blocks attributed to mining pools: sources (Esplora/mempool, Bitcoin Core),
pool attribution, the recent-block record, reorg handling, the local Esplora server and the
offline demo. See `collector` for the flow."""
