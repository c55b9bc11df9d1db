"""Stablecoin mints, burns and supply, one subpackage or module per chain family:
`evm` (Ethereum and other EVM chains through JSON-RPC), `solana` (SPL Token and
Token-2022 mints through the shared Solana engine in `convmon.collectors.solana`)."""
