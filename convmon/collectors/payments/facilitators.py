"""The default x402 facilitators: who submits x402 settlements on chain.

A facilitator pays the gas of a settlement, so it is ``tx.from`` on EVM chains and the fee
payer on Solana. These addresses are public facts, collected in 2026-11 from public indexer
configuration and x402scan; the list is a default that users extend in configuration
(``x402.facilitators``), never ground truth: a settlement from an address not listed is
still counted, under facilitator ``unknown``. EVM addresses are lower-case; Solana
addresses keep their base58 case.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

UNKNOWN = "unknown"
"""Facilitator label of an x402-shaped settlement sent by an address not listed."""

DEFAULT_FACILITATORS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "coinbase": {
        "base": (
            "0xdbdf3d8ed80f84c35d01c6c9f9271761bad90ba6",
            "0x9aae2b0d1b9dc55ac9bab9556f9a26cb64995fb9",
            "0x3a70788150c7645a21b95b7062ab1784d3cc2104",
            "0x708e57b6650a9a741ab39cae1969ea1d2d10eca1",
            "0xce82eeec8e98e443ec34fda3c3e999cbe4cb6ac2",
            "0x7f6d822467df2a85f792d4508c5722ade96be056",
            "0x001ddabba5782ee48842318bd9ff4008647c8d9c",
            "0x9c09faa49c4235a09677159ff14f17498ac48738",
            "0xcbb10c30a9a72fae9232f41cbbd566a097b4e03a",
            "0x9fb2714af0a84816f5c6322884f2907e33946b88",
        ),
        "solana": (
            "L54zkaPQFeTn1UsEqieEXBqWrPShiaZEPD7mS5WXfQg",
        ),
    },
    "payai": {
        "base": (
            "0xc6699d2aada6c36dfea5c248dd70f9cb0235cb63",
            "0xb2bd29925cbbcea7628279c91945ca5b98bf371b",
            "0x25659315106580ce2a787ceec5efb2d347b539c9",
            "0xb8f41cb13b1f213da1e94e1b742ec1323235c48f",
            "0xe575fa51af90957d66fab6d63355f1ed021b887b",
        ),
    },
    "x402rs": {
        "base": (
            "0xd8dfc729cbd05381647eb5540d756f4f8ad63eec",
            "0x76eee8f0acabd6b49f1cc4e9656a0c8892f3332e",
            "0x97d38aa5de015245dcca76305b53abe6da25f6a5",
            "0x0168f80e035ea68b191faf9bfc12778c87d92008",
            "0x5e437bee4321db862ac57085ea5eb97199c0ccc5",
            "0xc19829b32324f116ee7f80d193f99e445968499a",
        ),
        "polygon": (
            "0xd8dfc729cbd05381647eb5540d756f4f8ad63eec",
        ),
    },
    "daydreams": {
        "base": (
            "0x279e08f711182c79ba6d09669127a426228a4653",
        ),
    },
    "openx402": {
        "base": (
            "0x97316fa4730bc7d3b295234f8e4d04a0a4c093e8",
            "0x97db9b5291a218fc77198c285cefdc943ef74917",
        ),
    },
    "thirdweb": {
        "base": (
            "0x80c08de1a05df2bd633cf520754e40fde3c794d3",
        ),
        "polygon": (
            "0x80c08de1a05df2bd633cf520754e40fde3c794d3",
        ),
    },
    "questflow": {
        "base": (
            "0x724efafb051f17ae824afcdf3c0368ae312da264",
            "0xa9a54ef09fc8b86bc747cec6ef8d6e81c38c6180",
            "0x4638bc811c93bf5e60deed32325e93505f681576",
            "0xd7d91a42dfadd906c5b9ccde7226d28251e4cd0f",
            "0x4544b535938b67d2a410a98a7e3b0f8f68921ca7",
            "0x59e8014a3b884392fbb679fe461da07b18c1ff81",
            "0xe6123e6b389751c5f7e9349f3d626b105c1fe618",
            "0xf70e7cb30b132fab2a0a5e80d41861aa133ea21b",
            "0x90da501fdbec74bb0549100967eb221fed79c99b",
            "0xce7819f0b0b871733c933d1f486533bab95ec47b",
        ),
    },
    "codenut": {
        "base": (
            "0x8d8fa42584a727488eeb0e29405ad794a105bb9b",
            "0x87af99356d774312b73018b3b6562e1ae0e018c9",
            "0x65058cf664d0d07f68b663b0d4b4f12a5e331a38",
            "0x88e13d4c764a6c840ce722a0a3765f55a85b327e",
        ),
    },
    "aurracloud": {
        "base": (
            "0x222c4367a2950f3b53af260e111fc3060b0983ff",
            "0xb70c4fe126de09bd292fe3d1e40c6d264ca6a52a",
            "0xd348e724e0ef36291a28dfeccf692399b0e179f8",
        ),
    },
    "mogami": {
        "base": (
            "0xfe0920a0a7f0f8a1ec689146c30c3bbef439bf8a",
        ),
    },
    "xecho": {
        "base": (
            "0x3be45f576696a2fd5a93c1330cd19f1607ab311d",
        ),
    },
    "402104": {
        "base": (
            "0x73b2b8df52fbe7c40fe78db52e3dffdd5db5ad07",
        ),
    },
}
"""Facilitator -> chain -> the addresses it settles from."""


def facilitators_for(
    chain: str, extra: Mapping[str, Iterable[str]] | None = None, *, evm: bool = True
) -> dict[str, str]:
    """Address -> facilitator on ``chain``: the defaults plus ``extra`` (facilitator ->
    addresses; an address listed in both belongs to ``extra``'s facilitator). EVM
    addresses are compared lower-case."""
    out: dict[str, str] = {}
    for name, chains in DEFAULT_FACILITATORS.items():
        for address in chains.get(chain, ()):
            out[address.lower() if evm else address] = name
    for name, addresses in (extra or {}).items():
        for address in addresses:
            out[address.lower() if evm else address] = name
    return out
