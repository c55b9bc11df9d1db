"""convmon: a streaming monitor for Bitcoin pool concentration, Solana DePIN payouts,
stablecoin mints and burns, and miner economics."""

__version__ = "0.1.0"
