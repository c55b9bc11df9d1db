"""Solana DePIN reward payouts (plugin ``depin``): the network registry (`networks`), which
transactions are payouts (`payouts`), and the plugin wiring, on the shared Solana engine in
`convmon.collectors.solana`."""
