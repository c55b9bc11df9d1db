"""Machine payments (x402): the default facilitator list shared by the EVM and Solana
detectors, and the Solana x402 collector."""
