"""Stablecoin mints and burns and x402 payments on EVM chains (plugin ``stablecoins_evm``,
one collector per chain of the registry): confirmed token events through web3.py, with reorg
handling, gap backfill and supply reconciliation."""
