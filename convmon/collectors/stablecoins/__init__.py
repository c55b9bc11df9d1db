"""Stablecoin mints and burns. This package holds the Ethereum collector (plugin
``stablecoins_ethereum``); the Solana side lives under ``convmon.collectors.solana``."""
