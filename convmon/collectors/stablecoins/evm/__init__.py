"""Stablecoin mints and burns on EVM chains (plugin ``stablecoins_ethereum``): confirmed
token events through web3.py, with reorg handling, gap backfill and supply reconciliation."""
